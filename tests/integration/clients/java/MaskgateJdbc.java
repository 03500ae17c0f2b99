// A pgjdbc client for maskgate's integration tests (tests/integration/clients/test_jdbc.py).
//
// Usage: java -cp DIR:postgresql.jar MaskgateJdbc SCENARIO JDBC_URL USER PASSWORD [ARG]
//
// It runs one scenario the way a JDBC application or GUI would, and prints one JSON object on
// stdout: what the driver returned, SQLSTATEs and messages of errors, notices (SQLWarnings) and,
// where the scenario is about the protocol, the driver's own trace of the messages it sent.
// It asserts nothing itself: the Python test does, so a failure shows the whole result.

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.SQLWarning;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import java.util.logging.SimpleFormatter;

public class MaskgateJdbc {
    static String url;
    static Properties props;
    static final Map<String, Object> out = new LinkedHashMap<>();
    // Keep a reference: java.util.logging holds loggers weakly, and a collected logger loses its level.
    static final Logger PG_LOG = Logger.getLogger("org.postgresql");
    static final List<String> trace = new ArrayList<>();

    public static void main(String[] args) throws Exception {
        String scenario = args[0];
        url = args[1];
        props = new Properties();
        props.setProperty("user", args[2]);
        props.setProperty("password", args[3]);
        String arg = args.length > 4 ? args[4] : null;
        try {
            switch (scenario) {
                case "connect": connect(); break;
                case "metadata": metadata(); break;
                case "select": select(arg); break;
                case "fetchsize": fetchSize(Integer.parseInt(arg)); break;
                case "prepared": prepared(); break;
                case "refused": refused(); break;
                case "tls": tls(arg); break;
                default: throw new IllegalArgumentException("unknown scenario " + scenario);
            }
        } catch (SQLException e) {
            out.put("uncaught", error(e));
        }
        // UTF-8 whatever the machine's locale: names and notes are Chinese.
        PrintStream stdout = new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
        stdout.println(json(out));
    }

    static Connection open() throws SQLException {
        return DriverManager.getConnection(url, props);
    }

    /** The driver's FINEST log: every frontend/backend message it sends and reads (" FE=> Execute(...)"). */
    static void traceProtocol() {
        SimpleFormatter fmt = new SimpleFormatter();
        Handler h = new Handler() {
            @Override public void publish(LogRecord r) { trace.add(fmt.formatMessage(r).trim()); }
            @Override public void flush() {}
            @Override public void close() {}
        };
        h.setLevel(Level.ALL);
        PG_LOG.setUseParentHandlers(false);
        PG_LOG.addHandler(h);
        PG_LOG.setLevel(Level.FINEST);
    }

    static List<String> traced(String prefix) {
        List<String> r = new ArrayList<>();
        for (String t : trace) if (t.startsWith(prefix)) r.add(t);
        return r;
    }

    static Map<String, Object> error(SQLException e) {
        Map<String, Object> m = new LinkedHashMap<>();
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
        return r;
    }

    /** The named columns of a metadata result set, row by row. */
    static List<List<Object>> columns(ResultSet rs, String... names) throws SQLException {
        List<List<Object>> r = new ArrayList<>();
        while (rs.next()) {
            List<Object> row = new ArrayList<>();
            for (String name : names) {
                Object v = rs.getObject(name);
                row.add(v == null || v instanceof Number || v instanceof Boolean ? v : v.toString());
            }
            r.add(row);
        }
        rs.close();
        return r;
    }

    static void connect() throws SQLException {
        traceProtocol();
        try (Connection c = open(); Statement s = c.createStatement()) {
            List<String> auth = new ArrayList<>();
            // Message names only: the SASL payloads (nonces, proofs) are nobody's business.
            for (String t : trace) if (t.contains("Authentication") || t.contains("SASL")) auth.add(t.split("\\(")[0].trim());
            out.put("auth", auth);
            DatabaseMetaData md = c.getMetaData();
            out.put("product", md.getDatabaseProductName());
            out.put("version", md.getDatabaseProductVersion());
            out.put("autocommit", c.getAutoCommit());
            try (ResultSet rs = s.executeQuery("SELECT 1")) {
                out.put("select1", rows(rs));
            }
        }
        props.setProperty("password", "not-" + props.getProperty("password"));
        try (Connection c = open()) {
            out.put("wrong_password", null);
        } catch (SQLException e) {
            out.put("wrong_password", error(e));
        }
    }

    /** What DBeaver and similar tools ask on connect and when a table is opened in the navigator. */
    static void metadata() throws SQLException {
        try (Connection c = open()) {
            DatabaseMetaData md = c.getMetaData();
            Map<String, Object> calls = new LinkedHashMap<>();
            Map<String, Object> errors = new LinkedHashMap<>();
            String[] names = {
                "getCatalogs", "getSchemas", "getTableTypes", "getTables", "getColumns", "getPrimaryKeys",
                "getImportedKeys", "getExportedKeys", "getIndexInfo", "getTypeInfo", "getProcedures",
                "getFunctions", "getUserName", "getIdentifierQuoteString", "getSQLKeywords",
            };
            for (String name : names) {
                try {
                    calls.put(name, metadataCall(md, name));
                } catch (SQLException e) {
                    errors.put(name, error(e));
                    if (!c.getAutoCommit()) c.rollback();
                }
            }
            out.put("calls", calls);
            out.put("errors", errors);
        }
    }

    static Object metadataCall(DatabaseMetaData md, String name) throws SQLException {
        switch (name) {
            case "getCatalogs": return columns(md.getCatalogs(), "TABLE_CAT");
            case "getSchemas": return columns(md.getSchemas(), "TABLE_SCHEM");
            case "getTableTypes": return columns(md.getTableTypes(), "TABLE_TYPE");
            case "getTables":
                return columns(md.getTables(null, "public", "%", new String[] {"TABLE", "VIEW"}),
                        "TABLE_SCHEM", "TABLE_NAME", "TABLE_TYPE");
            case "getColumns":
                return columns(md.getColumns(null, "public", "customers", "%"),
                        "COLUMN_NAME", "TYPE_NAME", "DATA_TYPE", "COLUMN_SIZE", "NULLABLE", "ORDINAL_POSITION");
            case "getPrimaryKeys":
                return columns(md.getPrimaryKeys(null, "public", "customers"), "COLUMN_NAME", "PK_NAME");
            case "getImportedKeys":
                return columns(md.getImportedKeys(null, "public", "call_records"),
                        "PKTABLE_NAME", "PKCOLUMN_NAME", "FKCOLUMN_NAME");
            case "getExportedKeys":
                return columns(md.getExportedKeys(null, "public", "customers"), "FKTABLE_NAME", "FKCOLUMN_NAME");
            case "getIndexInfo":
                return columns(md.getIndexInfo(null, "public", "call_records", false, true),
                        "INDEX_NAME", "COLUMN_NAME", "NON_UNIQUE");
            case "getTypeInfo": return columns(md.getTypeInfo(), "TYPE_NAME", "DATA_TYPE");
            case "getProcedures": return columns(md.getProcedures(null, "public", "%"), "PROCEDURE_NAME").size();
            case "getFunctions": return columns(md.getFunctions(null, "public", "%"), "FUNCTION_NAME").size();
            case "getUserName": return md.getUserName();
            case "getIdentifierQuoteString": return md.getIdentifierQuoteString();
            case "getSQLKeywords": return md.getSQLKeywords().length() > 0;
            default: throw new IllegalArgumentException(name);
        }
    }

    static void select(String sql) throws SQLException {
        try (Connection c = open(); Statement s = c.createStatement()) {
            try (ResultSet rs = s.executeQuery(sql)) {
                ResultSetMetaData md = rs.getMetaData();
                List<String> types = new ArrayList<>();
                for (int i = 1; i <= md.getColumnCount(); i++) types.add(md.getColumnTypeName(i));
                out.put("types", types);
                out.put("rows", rows(rs));
            }
            out.put("warnings", warnings(s.getWarnings()));
        }
    }

    /** setFetchSize with autocommit off: a named portal, read with Execute(limit=n) in batches. */
    static void fetchSize(int n) throws SQLException {
        traceProtocol();
        try (Connection c = open()) {
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.setFetchSize(n);
                try (ResultSet rs = s.executeQuery("SELECT id, caller, started_at FROM call_records ORDER BY id")) {
                    out.put("rows", rows(rs));
                    // Notices that arrive while the result set fetches its later batches are its own warnings.
                    List<String> w = warnings(s.getWarnings());
                    w.addAll(warnings(rs.getWarnings()));
                    out.put("warnings", w);
                }
            }
            c.commit();
            out.put("executes", traced("FE=> Execute("));
            out.put("suspended", traced("<=BE PortalSuspended").size());
        }
    }

    /** One PreparedStatement run 8 times: from the 5th run on (prepareThreshold) pgjdbc uses a named server statement. */
    static void prepared() throws SQLException {
        traceProtocol();
        try (Connection c = open();
             PreparedStatement ps = c.prepareStatement(
                     "SELECT id, caller, duration_s, started_at FROM call_records WHERE id = ?")) {
            List<Object> runs = new ArrayList<>();
            List<Object> serverPrepared = new ArrayList<>();
            for (int i = 1; i <= 8; i++) {
                ps.setLong(1, i);
                try (ResultSet rs = ps.executeQuery()) {
                    runs.add(rows(rs));
                }
                serverPrepared.add(ps.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare());
            }
            out.put("runs", runs);
            out.put("prepare_threshold", ps.unwrap(org.postgresql.PGStatement.class).getPrepareThreshold());
            out.put("server_prepared", serverPrepared);
            out.put("parses", traced("FE=> Parse("));
            out.put("binds", traced("FE=> Bind("));
        }
    }

    static Map<String, Object> attempt(Connection c, String sql, Long param) {
        Map<String, Object> m = new LinkedHashMap<>();
        try {
            if (param == null) {
                try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
                    m.put("rows", rows(rs));
                }
            } else {
                try (PreparedStatement ps = c.prepareStatement(sql)) {
                    ps.setLong(1, param);
                    try (ResultSet rs = ps.executeQuery()) {
                        m.put("rows", rows(rs));
                    }
                }
            }
        } catch (SQLException e) {
            m.put("error", error(e));
        }
        return m;
    }

    static void refused() throws SQLException {
        try (Connection c = open()) {
            List<Object> auto = new ArrayList<>();
            auto.add(attempt(c, "SELECT bank_card FROM customers", null));
            auto.add(attempt(c, "SELECT 1", null));
            auto.add(attempt(c, "SELECT bank_card FROM customers WHERE id = ?", 1L));
            auto.add(attempt(c, "SELECT id FROM call_records WHERE id = ?", 1L));
            out.put("autocommit", auto);
            c.setAutoCommit(false);
            List<Object> tx = new ArrayList<>();
            tx.add(attempt(c, "SELECT id FROM call_records WHERE id = ?", 2L));
            tx.add(attempt(c, "SELECT * FROM audit_trail", null));
            tx.add(attempt(c, "SELECT 1", null));
            c.rollback();
            tx.add(attempt(c, "SELECT id FROM call_records WHERE id = ?", 3L));
            c.commit();
            out.put("transaction", tx);
        }
    }

    /** ARG is "ROOT_CERT,OTHER_CERT,N": N logins with each sslmode, then one against a CA that did not sign the server's certificate. */
    static void tls(String arg) throws SQLException {
        String[] a = arg.split(",");
        int n = Integer.parseInt(a[2]);
        String base = url;
        String[][] variants = {
            {"require", "&sslmode=require"},
            {"verify-ca", "&sslmode=verify-ca&sslrootcert=" + a[0]},
            {"wrong-ca", "&sslmode=verify-ca&sslrootcert=" + a[1]},
        };
        Map<String, Object> modes = new LinkedHashMap<>();
        for (String[] v : variants) {
            url = base + v[1];
            List<Object> logins = new ArrayList<>();
            for (int i = 0; i < (v[0].equals("wrong-ca") ? 1 : n); i++) {
                Map<String, Object> m = new LinkedHashMap<>();
                try (Connection c = open(); Statement s = c.createStatement();
                     ResultSet rs = s.executeQuery("SELECT id, caller FROM call_records ORDER BY id LIMIT 3")) {
                    m.put("rows", rows(rs));
                } catch (SQLException e) {
                    Map<String, Object> err = error(e);
                    Throwable cause = e.getCause();
                    if (cause != null) err.put("cause", cause.toString());
                    m.put("error", err);
                }
                logins.add(m);
            }
            modes.put(v[0], logins);
        }
        out.put("modes", modes);
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
