/*
 * An AWS SDK v2 credentials provider that follows a rotated key: Iceberg's S3FileIO (in Spark, in the Flink
 * CDC job and in the REST catalog server) asks it for the key on every request, and it answers from an AWS
 * shared-credentials file that it reads again once the file changed (`icetide stack rotate s3` renames a
 * new file over the old one). The SDK's own default and profile providers read the file once; the
 * SDK's ProfileFileSupplier.reloadWhenModified picks a rewritten file up within about a second.
 *
 * Iceberg loads it by name through its static create(Map): the catalog properties
 *   client.credentials-provider = io.icetide.jvm.FileCredentialsProvider
 *   client.credentials-provider.file = <path>          (required)
 *   client.credentials-provider.profile = <section>    (default "default")
 * so no JVM configuration holds the secret key itself.
 */
package io.icetide.jvm;

import java.nio.file.Path;
import java.util.Map;
import software.amazon.awssdk.auth.credentials.AwsCredentials;
import software.amazon.awssdk.auth.credentials.AwsCredentialsProvider;
import software.amazon.awssdk.auth.credentials.ProfileCredentialsProvider;
import software.amazon.awssdk.profiles.ProfileFile;
import software.amazon.awssdk.profiles.ProfileFileSupplier;

public final class FileCredentialsProvider implements AwsCredentialsProvider {
  public static final String FILE = "file";
  public static final String PROFILE = "profile";

  private final Path file;
  private final ProfileCredentialsProvider delegate;

  private FileCredentialsProvider(Path file, String profile) {
    this.file = file;
    this.delegate =
        ProfileCredentialsProvider.builder()
            .profileFile(ProfileFileSupplier.reloadWhenModified(file, ProfileFile.Type.CREDENTIALS))
            .profileName(profile)
            .build();
  }

  /** What Iceberg calls, with the `client.credentials-provider.` properties (prefix removed). */
  public static FileCredentialsProvider create(Map<String, String> properties) {
    String file = properties.get(FILE);
    if (file == null || file.isBlank()) {
      throw new IllegalArgumentException(
          "FileCredentialsProvider: catalog property 'client.credentials-provider." + FILE + "' is not set");
    }
    return new FileCredentialsProvider(Path.of(file), properties.getOrDefault(PROFILE, "default"));
  }

  @Override
  public AwsCredentials resolveCredentials() {
    return delegate.resolveCredentials();
  }

  @Override
  public String toString() { // the file's name only: never the key
    return "FileCredentialsProvider(" + file + ")";
  }
}
