// A MariaDB Connector/J client for maskgate's integration tests
// (tests/integration/clients/test_mysql_clients.py), the MySQL-side twin of MaskgateJdbc.java.
//
// Usage: java -cp DIR:mariadb-java-client.jar MaskgateMariaJdbc SCENARIO JDBC_URL USER PASSWORD [ARG]
//
// It runs one scenario the way a Java application would and prints one JSON object on stdout:
// rows as the driver returned them, vendor codes, SQLSTATEs and messages of errors, and
// SQLWarnings. It asserts nothing itself: the Python test does, so a failure shows the whole result.

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.SQLWarning;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

public class MaskgateMariaJdbc {
    static String url;
    static Properties props;
    static final Map<String, Object> out = new LinkedHashMap<>();

    public static void main(String[] args) throws Exception {
        String scenario = args[0];
        url = args[1];
        props = new Properties();
        props.setProperty("user", args[2]);
        props.setProperty("password", args[3]);
        String arg = args.length > 4 ? args[4] : null;
        try {
            switch (scenario) {
                case "session": session(arg); break;
                case "stream": stream(Integer.parseInt(arg)); break;
                case "batch": batch(); break;
                default: throw new IllegalArgumentException("unknown scenario " + scenario);
            }
        } catch (SQLException e) {
            out.put("uncaught", error(e));
        }
        // UTF-8 whatever the machine's locale: names are Chinese.
        PrintStream stdout = new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
        stdout.println(json(out));
    }

    static Connection open() throws SQLException {
        return DriverManager.getConnection(url, props);
    }

    static Map<String, Object> error(SQLException e) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("code", e.getErrorCode());
        m.put("sqlstate", e.getSQLState());
        m.put("message", e.getMessage());
        return m;
    }

    static List<String> warnings(SQLWarning w) {
        List<String> r = new ArrayList<>();
        for (; w != null; w = w.getNextWarning()) r.add(w.getMessage());
        return r;
    }

    static List<List<Object>> rows(ResultSet rs) throws SQLException {
        List<List<Object>> r = new ArrayList<>();
        int n = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            List<Object> row = new ArrayList<>();
            for (int i = 1; i <= n; i++) {
                Object v = rs.getObject(i);
                row.add(v == null || v instanceof Number || v instanceof Boolean ? v : v.toString());
            }
            r.add(row);
        }
        rs.close();
        return r;
    }

    /** Run `sql` (a PreparedStatement when `param` is given) and record its rows or its error. */
    static Map<String, Object> attempt(Connection c, String sql, Object param) {
        Map<String, Object> m = new LinkedHashMap<>();
        try {
            if (param == null) {
                try (Statement st = c.createStatement()) {
                    if (st.execute(sql)) m.put("rows", rows(st.getResultSet()));
                    else m.put("updated", st.getUpdateCount());
                }
            } else {
                try (PreparedStatement ps = c.prepareStatement(sql)) {
                    ps.setObject(1, param);
                    if (ps.execute()) m.put("rows", rows(ps.getResultSet()));
                    else m.put("updated", ps.getUpdateCount());
                }
            }
        } catch (SQLException e) {
            m.put("error", error(e));
        }
        return m;
    }

    /** `arg` is the SELECT to run, plain and (with `?` for the branch) prepared. */
    static void session(String sql) throws SQLException {
        try (Connection c = open()) {
            out.put("product", c.getMetaData().getDatabaseProductName());
            out.put("driver", c.getMetaData().getDriverVersion());
            List<Map<String, Object>> steps = new ArrayList<>();
            steps.add(attempt(c, sql.replace("?", "12"), null));
            steps.add(attempt(c, sql, 12));
            steps.add(attempt(c, "UPDATE customers SET phone = '1' WHERE id = 1", null));
            steps.add(attempt(c, "SELECT 1", null));
            steps.add(attempt(c, "UPDATE customers SET phone = ? WHERE id = 1", "1"));
            steps.add(attempt(c, "SELECT phone FROM customers WHERE id = ?", 4));
            out.put("steps", steps);
        }
    }

    /** Read call_records with setFetchSize(n): Integer.MIN_VALUE is the driver's row-by-row
     *  streaming, a positive n reads n rows at a time off the socket (Connector/J 2.7 has no
     *  server cursor: it never sends COM_STMT_FETCH); then a query on the same connection. */
    static void stream(int n) throws SQLException {
        try (Connection c = open()) {
            // A PreparedStatement: with useServerPrepStmts=true the rows come in the binary protocol.
            String sql = "SELECT id, caller FROM call_records WHERE id > ? ORDER BY id";
            try (PreparedStatement ps = c.prepareStatement(sql, ResultSet.TYPE_FORWARD_ONLY, ResultSet.CONCUR_READ_ONLY)) {
                ps.setFetchSize(n);
                ps.setInt(1, 0);
                ResultSet rs = ps.executeQuery();
                out.put("rows", rows(rs));
                out.put("warnings", warnings(ps.getWarnings()));
            }
            out.put("after", attempt(c, "SELECT 1", null));
        }
    }

    /** A PreparedStatement batch of two UPDATEs (with useServerPrepStmts, Connector/J sends
     *  it as one COM_STMT_BULK_EXECUTE when useBulkStmts is on), then a query. */
    static void batch() throws SQLException {
        try (Connection c = open()) {
            Map<String, Object> m = new LinkedHashMap<>();
            try (PreparedStatement ps = c.prepareStatement("UPDATE customers SET email = ? WHERE id = ?")) {
                for (long id : new long[] {4, 17}) {
                    ps.setString(1, "c" + id + "@example.com");
                    ps.setLong(2, id);
                    ps.addBatch();
                }
                int[] counts = ps.executeBatch();
                List<Object> r = new ArrayList<>();
                for (int n : counts) r.add(n);
                m.put("counts", r);
            } catch (SQLException e) {
                m.put("error", error(e));
            }
            out.put("batch", m);
            out.put("after", attempt(c, "SELECT email FROM customers WHERE id IN (4, 17) ORDER BY id", null));
        }
    }

    // --- a JSON writer, enough for maps, lists, strings, numbers, booleans and null ---

    static String json(Object v) {
        StringBuilder sb = new StringBuilder();
        write(sb, v);
        return sb.toString();
    }

    static void write(StringBuilder sb, Object v) {
        if (v == null) {
            sb.append("null");
        } else if (v instanceof Map) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                if (!first) sb.append(',');
                first = false;
                write(sb, e.getKey().toString());
                sb.append(':');
                write(sb, e.getValue());
            }
            sb.append('}');
        } else if (v instanceof List) {
            sb.append('[');
            boolean first = true;
            for (Object o : (List<?>) v) {
                if (!first) sb.append(',');
                first = false;
                write(sb, o);
            }
            sb.append(']');
        } else if (v instanceof Boolean || v instanceof Integer || v instanceof Long || v instanceof Short) {
            sb.append(v);
        } else if (v instanceof Number) {
            sb.append('"').append(v).append('"'); // BigDecimal, doubles: exact, as text
        } else {
            String s = v.toString();
            sb.append('"');
            for (char ch : s.toCharArray()) {
                switch (ch) {
                    case '"': sb.append("\\\""); break;
                    case '\\': sb.append("\\\\"); break;
                    case '\n': sb.append("\\n"); break;
                    case '\r': sb.append("\\r"); break;
                    case '\t': sb.append("\\t"); break;
                    default:
                        if (ch < 0x20) sb.append(String.format("\\u%04x", (int) ch));
                        else sb.append(ch);
                }
            }
            sb.append('"');
        }
    }
}
