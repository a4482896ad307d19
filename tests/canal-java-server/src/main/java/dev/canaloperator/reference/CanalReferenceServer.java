package dev.canaloperator.reference;

import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;

import org.I0Itec.zkclient.IZkStateListener;
import org.I0Itec.zkclient.exception.ZkNoNodeException;
import org.I0Itec.zkclient.exception.ZkNodeExistsException;
import org.apache.zookeeper.Watcher.Event.KeeperState;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import com.alibaba.otter.canal.common.utils.AddressUtils;
import com.alibaba.otter.canal.common.zookeeper.ZkClientx;
import com.alibaba.otter.canal.common.zookeeper.ZookeeperPathUtils;
import com.alibaba.otter.canal.common.zookeeper.running.ServerRunningData;
import com.alibaba.otter.canal.common.zookeeper.running.ServerRunningListener;
import com.alibaba.otter.canal.common.zookeeper.running.ServerRunningMonitor;
import com.alibaba.otter.canal.common.zookeeper.running.ServerRunningMonitors;
import com.alibaba.otter.canal.instance.spring.SpringCanalInstanceGenerator;
import com.alibaba.otter.canal.server.embedded.CanalServerWithEmbedded;
import com.alibaba.otter.canal.server.netty.CanalServerWithNetty;

/**
 * Starts canal's own server (canal 1.1.7 modules) from a canal.properties file, the way canal's
 * deployer (CanalLauncher + CanalController, not published on Maven Central after 1.1.4) does in
 * its default "spring" instance mode: an embedded server, one HA running monitor per destination
 * racing for {@code /otter/canal/destinations/{dest}/running} when canal.zkServers is set, the
 * cluster nodes, and the netty TCP server for canal clients.
 *
 * <p>Usage: {@code CanalReferenceServer CONF_DIR}. CONF_DIR holds canal.properties and one
 * {@code <destination>/instance.properties} per destination, and must be on the classpath (canal's
 * instance XML loads both as classpath resources). Left out, deliberately: canal-admin (manager
 * mode), the MQ connectors, auto-scan of the conf directory and the metrics port.
 */
public final class CanalReferenceServer {

    private static final Logger LOG = LoggerFactory.getLogger(CanalReferenceServer.class);

    private final Properties properties;
    private final String ip;
    private final String registerIp;
    private final int port;
    private final List<String> destinations = new ArrayList<>();
    private final CanalServerWithEmbedded embedded;
    private final CanalServerWithNetty netty;
    private final ZkClientx zk;
    private final Map<String, ServerRunningMonitor> monitors = new ConcurrentHashMap<>();

    CanalReferenceServer(Properties properties) {
        this.properties = properties;
        this.port = Integer.parseInt(property("canal.port", "11111"));
        String configuredIp = property("canal.ip", "");
        String configuredRegisterIp = property("canal.register.ip", "");
        // canal's rule: no address configured means the host's address, for both.
        if (configuredIp.isEmpty() && configuredRegisterIp.isEmpty()) {
            configuredIp = configuredRegisterIp = AddressUtils.getHostIp();
        }
        this.ip = configuredIp.isEmpty() ? AddressUtils.getHostIp() : configuredIp;
        this.registerIp = configuredRegisterIp.isEmpty() ? this.ip : configuredRegisterIp;

        for (String destination : property("canal.destinations", "").split(",")) {
            if (!destination.isBlank()) {
                destinations.add(destination.trim());
            }
        }
        if (destinations.isEmpty()) {
            throw new IllegalArgumentException("canal.destinations is empty");
        }

        embedded = CanalServerWithEmbedded.instance();
        embedded.setCanalInstanceGenerator(destination -> {
            SpringCanalInstanceGenerator generator = new SpringCanalInstanceGenerator();
            generator.setSpringXml(property("canal.instance." + destination + ".spring.xml",
                property("canal.instance.global.spring.xml", "classpath:spring/memory-instance.xml")));
            return generator.generate(destination);
        });
        String user = property("canal.user", "");
        String password = property("canal.passwd", "");
        if (!user.isEmpty()) {
            embedded.setUser(user);
            embedded.setPasswd(password);
        }

        netty = CanalServerWithNetty.instance();
        netty.setIp(ip);
        netty.setPort(port);

        String zkServers = property("canal.zkServers", "");
        if (zkServers.isEmpty()) {
            zk = null;
        } else {
            zk = ZkClientx.getZkClient(zkServers);
            zk.createPersistent(ZookeeperPathUtils.DESTINATION_ROOT_NODE, true);
            zk.createPersistent(ZookeeperPathUtils.CANAL_CLUSTER_ROOT_NODE, true);
        }
    }

    private String property(String key, String fallback) {
        String value = System.getProperty(key);
        if (value == null) {
            value = properties.getProperty(key);
        }
        return value == null ? fallback : value.trim();
    }

    private ServerRunningMonitor monitorFor(String destination, ServerRunningData serverData) {
        ServerRunningMonitor monitor = new ServerRunningMonitor(serverData);
        monitor.setDestination(destination);
        String clusterNode = ZookeeperPathUtils.getDestinationClusterNode(destination, registerIp + ":" + port);
        monitor.setListener(new ServerRunningListener() {
            @Override
            public void processActiveEnter() {
                embedded.start(destination);
            }

            @Override
            public void processActiveExit() {
                embedded.stop(destination);
            }

            @Override
            public void processStart() {
                if (zk != null) {
                    createEphemeral(clusterNode);
                    zk.subscribeStateChanges(newSessionListener(() -> createEphemeral(clusterNode)));
                }
            }

            @Override
            public void processStop() {
                if (zk != null) {
                    zk.delete(clusterNode);
                }
            }
        });
        if (zk != null) {
            monitor.setZkClient(zk);
        }
        monitor.init();
        return monitor;
    }

    void start() {
        LOG.info("## start the canal server[{}({}):{}]", ip, registerIp, port);
        String serverNode = ZookeeperPathUtils.getCanalClusterNode(registerIp + ":" + port);
        if (zk != null) {
            createEphemeral(serverNode);
            zk.subscribeStateChanges(newSessionListener(() -> createEphemeral(serverNode)));
        }
        ServerRunningData serverData = new ServerRunningData(registerIp + ":" + port);
        ServerRunningMonitors.setServerData(serverData);
        embedded.start();
        for (String destination : destinations) {
            ServerRunningMonitor monitor = monitorFor(destination, serverData);
            monitors.put(destination, monitor);
        }
        // ServerRunningMonitors backs CanalServerWithNetty's checks (running monitor per destination).
        ServerRunningMonitors.setRunningMonitors(monitors);
        for (ServerRunningMonitor monitor : monitors.values()) {
            monitor.start();
        }
        netty.start();
        LOG.info("## the canal server is running now ......");
    }

    void stop() {
        LOG.info("## stop the canal server");
        netty.stop();
        for (ServerRunningMonitor monitor : monitors.values()) {
            if (monitor.isStart()) {
                monitor.stop();
            }
        }
        if (zk != null) {
            zk.delete(ZookeeperPathUtils.getCanalClusterNode(registerIp + ":" + port));
            zk.close();
        }
        ZkClientx.clearClients();
        // CanalServerWithNetty.stop() stops the embedded server too.
        if (embedded.isStart()) {
            embedded.stop();
        }
        LOG.info("## canal server is down.");
    }

    private void createEphemeral(String path) {
        try {
            zk.createEphemeral(path);
        } catch (ZkNoNodeException e) {
            zk.createPersistent(path.substring(0, path.lastIndexOf('/')), true);
            zk.createEphemeral(path);
        } catch (ZkNodeExistsException e) {
            // left from this session before a stop/start: fine
        }
    }

    private static IZkStateListener newSessionListener(Runnable onNewSession) {
        return new IZkStateListener() {
            @Override
            public void handleStateChanged(KeeperState state) {
            }

            @Override
            public void handleNewSession() {
                onNewSession.run();
            }

            @Override
            public void handleSessionEstablishmentError(Throwable error) {
                LOG.error("failed to connect to zookeeper", error);
            }
        };
    }

    static Properties load(String confDir) throws IOException {
        Properties properties = new Properties();
        try (InputStream in = new FileInputStream(confDir + "/canal.properties")) {
            properties.load(new InputStreamReader(in, StandardCharsets.UTF_8));
        }
        return properties;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: CanalReferenceServer CONF_DIR (with canal.properties; CONF_DIR on the classpath)");
            System.exit(2);
        }
        Thread.setDefaultUncaughtExceptionHandler(
            (thread, e) -> LOG.error("UnCaughtException in thread {}", thread.getName(), e));
        CanalReferenceServer server;
        try {
            server = new CanalReferenceServer(load(args[0]));
            server.start();
        } catch (Throwable t) {
            LOG.error("## Something goes wrong when starting up the canal Server:", t);
            System.err.println("canal-java: failed to start: " + t);
            Runtime.getRuntime().halt(2);
            return;
        }
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                server.stop();
            } catch (Throwable t) {
                LOG.warn("## something goes wrong when stopping canal Server:", t);
            } finally {
                stopped.countDown();
            }
        }, "canal-shutdown"));
        stopped.await();
    }
}
