/*
 * icetide's launcher for Iceberg's reference REST catalog server.
 *
 * The server is Iceberg's own: RESTServerCatalogAdapter (iceberg-open-api's test fixtures, what the
 * apache/iceberg-rest-fixture image runs) over RESTCatalogAdapter and RESTCatalogServlet (iceberg-core's
 * test jar), in front of any Iceberg catalog built by CatalogUtil (here a JdbcCatalog). The fixture's own
 * main, RESTCatalogServer, binds every network interface and logs the catalog properties, secrets
 * included; this launcher differs from it in exactly that: it binds one host (loopback), reads the
 * properties from a file (args[0], readable by its owner only) instead of the environment, and never
 * logs them. It lives in the adapter's package because the adapter's constructor is package-private.
 *
 * In a container the properties file is configuration, not a secret: `jdbc.password-env=NAME` makes the
 * backing catalog's database password the value of environment variable NAME (PostgreSQL's JDBC driver
 * reads no PGPASSWORD), and S3FileIO without an access key takes the AWS SDK's default chain
 * (AWS_SHARED_CREDENTIALS_FILE: the catalog role's credentials file).
 */
package org.apache.iceberg.rest;

import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import org.apache.hadoop.conf.Configuration;
import org.apache.iceberg.CatalogUtil;
import org.apache.iceberg.catalog.Catalog;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.server.handler.gzip.GzipHandler;
import org.eclipse.jetty.servlet.ServletContextHandler;
import org.eclipse.jetty.servlet.ServletHolder;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

public final class IcetideRestLauncher {
  private static final Logger LOG = LoggerFactory.getLogger(IcetideRestLauncher.class);
  private static final String PASSWORD_ENV = "jdbc.password-env";

  private IcetideRestLauncher() {}

  public static void main(String[] args) throws Exception {
    if (args.length != 1) {
      throw new IllegalArgumentException("usage: IcetideRestLauncher <catalog.properties>");
    }
    Properties file = new Properties();
    try (InputStream in = Files.newInputStream(Path.of(args[0]))) {
      file.load(in);
    }
    Map<String, String> props = new HashMap<>();
    for (String key : file.stringPropertyNames()) {
      props.put(key, file.getProperty(key));
    }
    String passwordEnv = props.remove(PASSWORD_ENV);
    if (passwordEnv != null) {
      String password = System.getenv(passwordEnv);
      if (password == null || password.isEmpty()) {
        throw new IllegalArgumentException(PASSWORD_ENV + ": environment variable " + passwordEnv + " is not set");
      }
      props.put("jdbc.password", password);
    }
    String host = props.remove("rest.host");
    int port = Integer.parseInt(props.remove("rest.port"));
    String name = props.getOrDefault(RESTCatalogServer.CATALOG_NAME, "rest_backend");

    Catalog backend = CatalogUtil.buildIcebergCatalog(name, props, new Configuration());
    RESTCatalogAdapter adapter =
        new RESTServerCatalogAdapter(new RESTCatalogServer.CatalogContext(backend, props));

    ServletContextHandler context = new ServletContextHandler(ServletContextHandler.NO_SESSIONS);
    context.addServlet(new ServletHolder(new RESTCatalogServlet(adapter)), "/*");
    context.insertHandler(new GzipHandler());

    Server server = new Server();
    ServerConnector connector = new ServerConnector(server);
    connector.setHost(host);
    connector.setPort(port);
    server.addConnector(connector);
    server.setHandler(context);
    server.setStopAtShutdown(true);
    server.start();
    LOG.info("Iceberg REST catalog {} listening on http://{}:{}/", name, host, connector.getLocalPort());
    server.join();
  }
}
