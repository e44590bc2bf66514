// What a JDBC BI tool (Tableau, DBeaver) does on connecting: list tables and columns through DatabaseMetaData,
// then run a query. Run from source (`java -cp trino-jdbc.jar TrinoJdbcProbe.java URL USER SCHEMA SQL`) by
// tests/integration/test_trino_bi.py; the password comes from $TRINO_PASSWORD (never on the command line).
// Prints tab-separated lines: "table" catalog schema name type remarks, "column" table name type remarks,
// "row" values..., or "error" SQLState message.

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;

public class TrinoJdbcProbe {
    public static void main(String[] args) throws Exception {
        String url = args[0], user = args[1], schema = args[2], sql = args[3];
        Properties props = new Properties();
        props.setProperty("user", user);
        props.setProperty("password", System.getenv("TRINO_PASSWORD"));
        try (Connection conn = DriverManager.getConnection(url, props)) {
            DatabaseMetaData meta = conn.getMetaData();
            try (ResultSet rs = meta.getTables("lake", schema, "%", null)) {
                while (rs.next()) {
                    print("table", rs.getString("TABLE_CAT"), rs.getString("TABLE_SCHEM"), rs.getString("TABLE_NAME"),
                          rs.getString("TABLE_TYPE"), rs.getString("REMARKS"));
                }
            }
            try (ResultSet rs = meta.getColumns("lake", schema, "%", "%")) {
                while (rs.next()) {
                    print("column", rs.getString("TABLE_NAME"), rs.getString("COLUMN_NAME"),
                          rs.getString("TYPE_NAME"), rs.getString("REMARKS"));
                }
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(sql)) {
                int n = rs.getMetaData().getColumnCount();
                while (rs.next()) {
                    String[] values = new String[n + 1];
                    values[0] = "row";
                    for (int i = 1; i <= n; i++) {
                        values[i] = rs.getString(i);
                    }
                    print(values);
                }
            } catch (SQLException e) {
                print("error", e.getSQLState(), e.getMessage());
            }
        }
    }

    private static void print(String... fields) {
        StringBuilder line = new StringBuilder();
        for (int i = 0; i < fields.length; i++) {
            if (i > 0) {
                line.append('\t');
            }
            line.append(fields[i] == null ? "" : fields[i].replace('\t', ' ').replace('\n', ' '));
        }
        System.out.println(line);
    }
}
