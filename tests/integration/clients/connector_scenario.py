"""One mysql-connector-python session through the proxy, run in a process of its own.

Its C extension holds the GIL while it waits on the network, so it cannot share a process with
the in-process maskgate of the tests (the proxy's thread would never run). Prints one JSON
object: the driver class, the rows of the vendor's customer query, the refusal of an UPDATE
(errno, msg) and the phone of customer 4 read after it.

    python connector_scenario.py PORT USER PASSWORD QUERY use_pure|cext text|prepared
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    port, user, password, query, mode, protocol = sys.argv[1:7]
    import mysql.connector as mc

    conn = mc.connect(
        host="127.0.0.1",
        port=int(port),
        user=user,
        password=password,
        database="crm",
        use_pure=mode == "pure",
        ssl_disabled=True,
    )
    out: dict[str, object] = {"driver": type(conn).__name__}
    try:
        prepared = protocol == "prepared"
        mark = "?" if prepared else "%s"
        cur = conn.cursor(prepared=prepared)

        def text(v: object) -> object:
            return v.decode() if isinstance(v, bytes | bytearray) else v

        cur.execute(f"{query} WHERE branch_id = {mark} ORDER BY id", (12,))
        out["rows"] = [[text(v) if not isinstance(v, int) else v for v in row] for row in cur.fetchall()]
        try:
            cur.execute(f"UPDATE customers SET phone = {mark} WHERE id = 1", ("1",))
            out["refusal"] = None
        except mc.Error as e:
            out["refusal"] = [e.errno, e.msg]
        cur.execute(f"SELECT phone FROM customers WHERE id = {mark}", (4,))
        out["phone4"] = text(cur.fetchone()[0])
        cur.close()
    finally:
        conn.close()
    print(json.dumps(out, default=str, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
