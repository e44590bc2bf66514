/*
 * A credentials provider for Hadoop's s3a file system inside Flink's flink-s3-fs-hadoop plugin (the CDC
 * job's checkpoints on the object store) that follows a rotated key: it answers from an AWS
 * shared-credentials file and reads the file again once it changed (its inode or modification time: a
 * rotation renames a new file over the old one). The
 * plugin (Flink 2.0.0) bundles Hadoop 3.3.4 and the AWS SDK v1 without relocating them, so this class
 * implements com.amazonaws.auth.AWSCredentialsProvider; it lives in a jar in the plugin's own folder,
 * because only the plugin's class loader sees those classes.
 *
 * Flink configuration (mirrored by the plugin from s3.* to fs.s3a.*):
 *   s3.aws.credentials.provider = io.icetide.s3a.FileCredentialsProvider
 *   s3.icetide.credentials.file = <path>             (required)
 *   s3.icetide.credentials.profile = <section>       (default "default")
 */
package io.icetide.s3a;

import com.amazonaws.auth.AWSCredentials;
import com.amazonaws.auth.AWSCredentialsProvider;
import com.amazonaws.auth.profile.ProfilesConfigFile;
import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.List;
import java.util.Objects;
import org.apache.hadoop.conf.Configuration;

public final class FileCredentialsProvider implements AWSCredentialsProvider {
  public static final String FILE_KEY = "fs.s3a.icetide.credentials.file";
  public static final String PROFILE_KEY = "fs.s3a.icetide.credentials.profile";

  private final File file;
  private final String profile;
  private volatile AWSCredentials current;
  private volatile List<Object> seen; // the file's inode and modification time when it was read

  /** The constructor s3a looks for first (S3AUtils.createAWSCredentialProvider). */
  public FileCredentialsProvider(URI uri, Configuration conf) throws IOException {
    String path = conf.getTrimmed(FILE_KEY, "");
    if (path.isEmpty()) {
      throw new IOException("io.icetide.s3a.FileCredentialsProvider: " + FILE_KEY
          + " (Flink: s3.icetide.credentials.file) is not set");
    }
    this.file = new File(path);
    this.profile = conf.getTrimmed(PROFILE_KEY, "default");
    getCredentials(); // a missing file or profile fails when the file system opens, not at the first write
  }

  /** Called by the S3 client for every request: a stat, and a read only when the file changed. */
  @Override
  public AWSCredentials getCredentials() {
    List<Object> stamp = stamp();
    if (!stamp.equals(seen)) {
      load(stamp);
    }
    return current;
  }

  private List<Object> stamp() {
    try {
      BasicFileAttributes attrs = Files.readAttributes(file.toPath(), BasicFileAttributes.class);
      return List.of(Objects.requireNonNullElse(attrs.fileKey(), ""), attrs.lastModifiedTime());
    } catch (IOException e) { // the path only: never the content
      throw new UncheckedIOException("io.icetide.s3a.FileCredentialsProvider: cannot read " + file, e);
    }
  }

  private synchronized void load(List<Object> stamp) {
    if (stamp.equals(seen)) {
      return; // another thread read it
    }
    current = new ProfilesConfigFile(file).getCredentials(profile);
    seen = stamp;
  }

  @Override
  public void refresh() {
    seen = null;
  }

  @Override
  public String toString() { // the file's name only: never the key
    return "io.icetide.s3a.FileCredentialsProvider(" + file + ")";
  }
}
