/*
 * A Kafka SASL client callback handler (`sasl.client.callback.handler.class`) that answers SCRAM's name and
 * password callbacks from the principal's secret file on every authentication, so a Java client follows
 * `icetide stack rotate kafka`: the new password is used at the next authentication — a new connection, or
 * the re-authentication the broker demands every `connections.max.reauth.ms` (settings `kafka.reauth_ms`).
 * Kafka's default handler takes the password from the JAAS configuration, read once when the client starts.
 *
 * The JAAS configuration names the user and the file, never the password:
 *   ScramLoginModule required username="cdc" passwordFile="/state/kafka/secrets/cdc.password";
 *
 * `make setup` compiles this source twice: as is, for Kafka Connect and Kafka's tools, and with Kafka's
 * packages renamed to flink-sql-connector-kafka's relocated ones (org.apache.flink.kafka.shaded.), as
 * io.icetide.jvm.flink.FileScramCallbackHandler, for the Flink CDC job and mirror.
 */
package io.icetide.jvm;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import javax.security.auth.callback.Callback;
import javax.security.auth.callback.NameCallback;
import javax.security.auth.callback.PasswordCallback;
import javax.security.auth.callback.UnsupportedCallbackException;
import javax.security.auth.login.AppConfigurationEntry;
import org.apache.kafka.common.security.auth.AuthenticateCallbackHandler;

public final class FileScramCallbackHandler implements AuthenticateCallbackHandler {
  public static final String USERNAME = "username";
  public static final String PASSWORD_FILE = "passwordFile";

  private String username;
  private Path passwordFile;

  @Override
  public void configure(Map<String, ?> configs, String mechanism, List<AppConfigurationEntry> jaasEntries) {
    if (jaasEntries.size() != 1) {
      throw new IllegalArgumentException(
          "FileScramCallbackHandler: sasl.jaas.config must have one login module, found " + jaasEntries.size());
    }
    Map<String, ?> options = jaasEntries.get(0).getOptions();
    this.username = option(options, USERNAME);
    this.passwordFile = Path.of(option(options, PASSWORD_FILE));
  }

  private static String option(Map<String, ?> options, String name) {
    Object value = options.get(name);
    if (!(value instanceof String) || ((String) value).isBlank()) {
      throw new IllegalArgumentException("FileScramCallbackHandler: sasl.jaas.config has no " + name + " option");
    }
    return (String) value;
  }

  @Override
  public void handle(Callback[] callbacks) throws IOException, UnsupportedCallbackException {
    for (Callback callback : callbacks) {
      if (callback instanceof NameCallback) {
        ((NameCallback) callback).setName(username);
      } else if (callback instanceof PasswordCallback) {
        ((PasswordCallback) callback).setPassword(readPassword());
      } else {
        throw new UnsupportedCallbackException(callback); // SCRAM extensions: none (the client says so)
      }
    }
  }

  /** The file as it is now: a rotation renames a new file over it, so a read never sees half a password. */
  private char[] readPassword() throws IOException {
    try {
      return Files.readString(passwordFile, StandardCharsets.UTF_8).strip().toCharArray();
    } catch (IOException e) { // the path only: the file's content is the secret
      throw new IOException("FileScramCallbackHandler: cannot read the password file " + passwordFile, e);
    }
  }

  @Override
  public void close() {}
}
