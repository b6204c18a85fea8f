// The PostgreSQL JDBC driver against the endpoint:
//   java -cp build/clients/java/postgresql-42.7.14.jar tests/clients/java/Client.java HOST PORT
// Prints one line per check, "name=value"; tests/test_pg_clients.py reads them.

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class Client {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/shop";
        Properties props = new Properties();
        props.setProperty("user", "tester");
        // Server-side prepared statements from the first execution on.
        props.setProperty("prepareThreshold", "1");
        try (Connection conn = DriverManager.getConnection(url, props)) {
            DatabaseMetaData meta = conn.getMetaData();
            print("product", meta.getDatabaseProductName() + " " + meta.getDatabaseMajorVersion());
            try (Statement st = conn.createStatement();
                    ResultSet rs = st.executeQuery("SELECT id, name, total, vip FROM customers ORDER BY id")) {
                List<String> rows = new ArrayList<>();
                while (rs.next()) {
                    rows.add(rs.getLong(1) + "|" + rs.getString(2) + "|" + rs.getDouble(3) + "|" + rs.getBoolean(4));
                }
                print("rows", String.join(";", rows));
            }
            try (PreparedStatement ps = conn.prepareStatement("SELECT add_i64(?, ?)")) {
                List<String> sums = new ArrayList<>();
                for (long i = 0; i < 3; i++) {
                    ps.setLong(1, i);
                    ps.setLong(2, 40);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        sums.add(Long.toString(rs.getLong(1)));
                    }
                }
                print("sums", String.join(",", sums));
            }
            conn.setAutoCommit(false);
            try (PreparedStatement ps = conn.prepareStatement("INSERT INTO customers (id, name, total) VALUES (?, ?, ?)")) {
                ps.setLong(1, 60);
                ps.setString(2, "jay");
                ps.setDouble(3, 1.25);
                print("inserted", Integer.toString(ps.executeUpdate()));
            }
            conn.rollback();
            conn.setAutoCommit(true);
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*) FROM customers")) {
                rs.next();
                print("after_rollback", Long.toString(rs.getLong(1)));
            }
            try (Statement st = conn.createStatement()) {
                st.executeQuery("SELECT * FROM no_such_table");
            } catch (SQLException e) {
                print("error", e.getSQLState());
            }
            try (ResultSet rs = meta.getTables(null, "public", "%", new String[] {"TABLE"})) {
                List<String> tables = new ArrayList<>();
                while (rs.next()) {
                    tables.add(rs.getString("TABLE_NAME"));
                }
                print("tables", String.join(",", tables));
            }
        }
    }

    private static void print(String name, String value) {
        System.out.println(name + "=" + value);
    }
}
