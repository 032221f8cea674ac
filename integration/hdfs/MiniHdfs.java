// A real HDFS for tests and benchmarks: one namenode and one datanode from
// Hadoop's own MiniDFSCluster (org.apache.hadoop:hadoop-client-minicluster).
//
//   java -cp 'LIBS/*' MiniHdfs.java PORT BASEDIR
//
// Listens on hdfs://127.0.0.1:PORT, keeps its blocks under BASEDIR, prints
// "ready hdfs://127.0.0.1:PORT" once the datanode serves, and runs until it
// is killed (or its stdin closes when started with --stdin-lifetime).
import java.nio.file.Files;
import java.nio.file.Path;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.hdfs.MiniDFSCluster;

public class MiniHdfs {
    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: MiniHdfs PORT BASEDIR [--stdin-lifetime]");
            System.exit(2);
        }
        int port = Integer.parseInt(args[0]);
        Path base = Path.of(args[1]).toAbsolutePath();
        Files.createDirectories(base);
        Configuration conf = new Configuration();
        conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, base.toString());
        // Clients connect to the datanode by the address it registers.
        conf.set("dfs.datanode.hostname", "127.0.0.1");
        conf.setBoolean("dfs.client.use.datanode.hostname", true);
        // Small blocks make multi-block files cheap to test.
        conf.setLong("dfs.blocksize", 8L << 20);
        MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf)
            .nameNodePort(port)
            .numDataNodes(1)
            .format(!Files.exists(base.resolve("data").resolve("name1").resolve("current")))
            .build();
        cluster.waitActive();
        // Tests write as whoever runs them: an open root, as a scratch HDFS.
        FileSystem fs = cluster.getFileSystem();
        fs.setPermission(new org.apache.hadoop.fs.Path("/"), new FsPermission((short) 0777));
        Runtime.getRuntime().addShutdownHook(new Thread(cluster::shutdown));
        System.out.println("ready hdfs://127.0.0.1:" + cluster.getNameNodePort());
        System.out.flush();
        if (args.length > 2 && args[2].equals("--stdin-lifetime")) {
            while (System.in.read() >= 0) { }
            System.exit(0);
        }
        Thread.currentThread().join();
    }
}
