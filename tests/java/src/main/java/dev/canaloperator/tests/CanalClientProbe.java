package dev.canaloperator.tests;

import java.io.BufferedOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.lang.reflect.Field;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.TimeUnit;

import com.alibaba.otter.canal.client.CanalConnector;
import com.alibaba.otter.canal.client.CanalConnectors;
import com.alibaba.otter.canal.client.impl.ClusterCanalConnector;
import com.alibaba.otter.canal.client.impl.SimpleCanalConnector;
import com.alibaba.otter.canal.common.zookeeper.ZkClientx;
import com.alibaba.otter.canal.protocol.CanalEntry;
import com.alibaba.otter.canal.protocol.ClientIdentity;
import com.alibaba.otter.canal.protocol.Message;

/**
 * Drives canal's own Java client ({@code com.alibaba.otter:canal.client}) against a canal-compatible
 * server and prints every received {@code Entry} as one JSON object per line on stdout.
 *
 * <p>Exit status: 0 on normal completion (final line {@code {"done":true,...}}), 2 on any error
 * (usage error or exception; the message goes to stderr), 3 when {@code --count} rows did not arrive
 * before {@code --idle-ms} of silence or {@code --max-ms} elapsed (final line {@code {"done":false,...}}).
 */
public final class CanalClientProbe {

    static final String USAGE = String.join("\n",
        "usage: java-client (--addr HOST:PORT | --zk HOST:PORT[,HOST:PORT...]) --destination D [options]",
        "",
        "Runs canal's Java client (canal.client " + canalVersion() + ") and prints each received Entry as one JSON line.",
        "",
        "  --addr HOST:PORT        simple connector (CanalConnectors.newSingleConnector)",
        "  --zk SERVERS            cluster connector via ZooKeeper (CanalConnectors.newClusterConnector)",
        "  --destination D         canal destination (instance) name (required)",
        "  --user U                user name (default \"\")",
        "  --password P            password (default \"\"; canal's client always sends it scrambled)",
        "  --filter F              subscribe(F); without it subscribe() (an empty filter)",
        "  --no-subscribe          do not subscribe at all",
        "  --client-id N           client id (canal hard-codes 1001; set by reflection; --addr only)",
        "  --batch N               batch size of each getWithoutAck (default 100)",
        "  --count N               stop after N row changes (rows of non-DDL ROWDATA entries); 0 = until idle",
        "  --idle-ms N             stop after N ms without data (default 10000)",
        "  --timeout-ms N          timeout of each getWithoutAck(batch, timeout, MILLISECONDS) (default 1000)",
        "  --max-ms N              hard deadline for the whole run, 0 = none (default 0)",
        "  --connect-timeout-ms N  fail when connect()+subscribe() take longer (default 30000)",
        "  --so-timeout-ms N       socket read timeout of the connector (default canal's 60000)",
        "  --retry-times N         cluster connector retries (default canal's 3)",
        "  --retry-interval-ms N   cluster connector retry interval (default canal's 5000)",
        "  --no-ack                never ack (backpressure tests)",
        "  --rollback-first        after the first non-empty batch, rollback() instead of ack; its entries",
        "                          carry \"rolledBack\":true and do not count towards --count/rows",
        "  --rollback-after-subscribe  call rollback() once after subscribing, as canal's ClientSample does",
        "  --help                  this text",
        "",
        "stdout: one JSON object per Entry, then {\"done\":true,\"rows\":N,\"batches\":M,...};",
        "logging and errors go to stderr. Exit status 0 done, 2 error, 3 --count not reached.");

    /** The canal.client version inside this jar, from the pom.properties that the shaded jar keeps. */
    static String canalVersion() {
        try (java.io.InputStream in = CanalClientProbe.class.getResourceAsStream(
            "/META-INF/maven/com.alibaba.otter/canal.client/pom.properties")) {
            if (in != null) {
                java.util.Properties p = new java.util.Properties();
                p.load(in);
                return p.getProperty("version", "?");
            }
        } catch (java.io.IOException e) {
            // fall through
        }
        return "?";
    }

    // ---- options
    String addr;
    InetSocketAddress address;
    String zk;
    String destination;
    String user = "";
    String password = "";
    String filter;
    boolean noSubscribe;
    Integer clientId;
    int batch = 100;
    long count;
    long idleMs = 10000;
    long timeoutMs = 1000;
    long maxMs;
    long connectTimeoutMs = 30000;
    Integer soTimeoutMs;
    Integer retryTimes;
    Integer retryIntervalMs;
    boolean noAck;
    boolean rollbackFirst;
    boolean rollbackAfterSubscribe;

    // ---- state
    private final PrintStream out;
    private long rows;
    private long batches;
    private long entries;
    private long emptyIdBatches;
    private long rolledBackRows;
    private volatile boolean connected;
    /** What the probe is doing, for error messages. */
    private volatile String phase = "start";

    CanalClientProbe(PrintStream out) {
        this.out = out;
    }

    public static void main(String[] args) {
        // Our JSON goes to the real stdout; anything else that writes to System.out goes to stderr.
        PrintStream json = new PrintStream(new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 1 << 16),
            false, StandardCharsets.UTF_8);
        System.setOut(System.err);
        CanalClientProbe probe = new CanalClientProbe(json);
        int status;
        try {
            if (!probe.parse(args)) {
                json.print(USAGE);
                json.print('\n');
                json.flush();
                System.exit(0);
            }
        } catch (IllegalArgumentException e) {
            System.err.println("java-client: " + e.getMessage());
            System.err.println("run with --help for usage");
            System.exit(2);
        }
        try {
            status = probe.run();
        } catch (Throwable t) {
            json.flush();
            System.err.println("java-client: error in " + probe.phase + " (" + probe.target() + "): " + t);
            for (Throwable c = t.getCause(); c != null && c != c.getCause(); c = c.getCause()) {
                System.err.println("  caused by: " + c);
            }
            System.err.println("java-client: stack trace follows");
            t.printStackTrace(System.err);
            System.err.flush();
            status = 2;
        }
        json.flush();
        System.err.flush();
        // halt: canal/zkclient leave non-daemon threads behind.
        Runtime.getRuntime().halt(status);
    }

    /** @return false when --help was asked for */
    boolean parse(String[] args) {
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            String v = null;
            int eq = a.indexOf('=');
            if (a.startsWith("--") && eq > 0) {
                v = a.substring(eq + 1);
                a = a.substring(0, eq);
            }
            switch (a) {
                case "--help":
                case "-h":
                    return false;
                case "--no-ack":
                    noAck = true;
                    continue;
                case "--rollback-first":
                    rollbackFirst = true;
                    continue;
                case "--rollback-after-subscribe":
                    rollbackAfterSubscribe = true;
                    continue;
                case "--no-subscribe":
                    noSubscribe = true;
                    continue;
                default:
                    break;
            }
            if (v == null) {
                if (i + 1 >= args.length) {
                    throw new IllegalArgumentException(
                        a.startsWith("--") ? "missing value for " + a : "unexpected argument: " + a);
                }
                v = args[++i];
            }
            switch (a) {
                case "--addr": addr = v; break;
                case "--zk": zk = v; break;
                case "--destination": destination = v; break;
                case "--user": user = v; break;
                case "--password": password = v; break;
                case "--filter": filter = v; break;
                case "--client-id": clientId = (int) num(a, v, 0, Short.MAX_VALUE); break;
                case "--batch": batch = (int) num(a, v, 1, Integer.MAX_VALUE); break;
                case "--count": count = num(a, v, 0, Long.MAX_VALUE); break;
                case "--idle-ms": idleMs = num(a, v, 0, Long.MAX_VALUE); break;
                case "--timeout-ms": timeoutMs = num(a, v, 0, Long.MAX_VALUE); break;
                case "--max-ms": maxMs = num(a, v, 0, Long.MAX_VALUE); break;
                case "--connect-timeout-ms": connectTimeoutMs = num(a, v, 0, Long.MAX_VALUE); break;
                case "--so-timeout-ms": soTimeoutMs = (int) num(a, v, 0, Integer.MAX_VALUE); break;
                case "--retry-times": retryTimes = (int) num(a, v, -1, Integer.MAX_VALUE); break;
                case "--retry-interval-ms": retryIntervalMs = (int) num(a, v, 0, Integer.MAX_VALUE); break;
                default: throw new IllegalArgumentException("unknown option: " + a);
            }
        }
        if ((addr == null) == (zk == null)) {
            throw new IllegalArgumentException("give exactly one of --addr HOST:PORT or --zk SERVERS");
        }
        if (addr != null) {
            address = parseAddr(addr);
        }
        if (destination == null || destination.isEmpty()) {
            throw new IllegalArgumentException("--destination is required");
        }
        if (zk != null && clientId != null && clientId != 1001) {
            throw new IllegalArgumentException("--client-id works with --addr only: canal's cluster connector"
                                               + " creates its SimpleCanalConnector (client id 1001) internally");
        }
        if (noSubscribe && filter != null) {
            throw new IllegalArgumentException("--filter and --no-subscribe exclude each other");
        }
        return true;
    }

    private static long num(String opt, String v, long min, long max) {
        long n;
        try {
            n = Long.parseLong(v.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(opt + " needs a number, got '" + v + "'");
        }
        if (n < min || n > max) {
            throw new IllegalArgumentException(opt + " must be in [" + min + ", " + max + "], got " + n);
        }
        return n;
    }

    static InetSocketAddress parseAddr(String s) {
        int colon = s.lastIndexOf(':');
        if (colon <= 0 || colon == s.length() - 1) {
            throw new IllegalArgumentException("--addr needs HOST:PORT, got '" + s + "'");
        }
        String host = s.substring(0, colon);
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        return new InetSocketAddress(host, (int) num("--addr port", s.substring(colon + 1), 1, 65535));
    }

    CanalConnector createConnector() throws ReflectiveOperationException {
        if (addr != null) {
            CanalConnector c = CanalConnectors.newSingleConnector(address, destination, user, password);
            SimpleCanalConnector s = (SimpleCanalConnector) c;
            if (soTimeoutMs != null) {
                s.setSoTimeout(soTimeoutMs);
            }
            if (clientId != null) {
                Field f = SimpleCanalConnector.class.getDeclaredField("clientIdentity");
                f.setAccessible(true);
                ((ClientIdentity) f.get(s)).setClientId(clientId.shortValue());
            }
            return c;
        }
        CanalConnector c = CanalConnectors.newClusterConnector(zk, destination, user, password);
        ClusterCanalConnector cc = (ClusterCanalConnector) c;
        if (soTimeoutMs != null) {
            cc.setSoTimeout(soTimeoutMs);
        }
        if (retryTimes != null) {
            cc.setRetryTimes(retryTimes);
        }
        if (retryIntervalMs != null) {
            cc.setRetryInterval(retryIntervalMs);
        }
        return c;
    }

    private static Thread watchdog(String name, long ms, Runnable onExpiry) {
        Thread t = new Thread(() -> {
            try {
                Thread.sleep(ms);
            } catch (InterruptedException e) {
                return;
            }
            onExpiry.run();
        }, name);
        t.setDaemon(true);
        t.start();
        return t;
    }

    int run() throws Exception {
        long start = System.nanoTime();
        if (maxMs > 0) {
            watchdog("probe-deadline", maxMs, () -> {
                synchronized (out) {
                    out.print(doneLine(false, "deadline"));
                    out.flush();
                }
                System.err.println("java-client: --max-ms " + maxMs + " elapsed during " + phase);
                System.err.flush();
                Runtime.getRuntime().halt(3);
            });
        }
        Thread connectWatch = null;
        if (connectTimeoutMs > 0) {
            connectWatch = watchdog("probe-connect-timeout", connectTimeoutMs, () -> {
                if (!connected) {
                    System.err.println("java-client: error: " + phase + " on " + target() + " did not finish within "
                                       + connectTimeoutMs + " ms (--connect-timeout-ms)");
                    System.err.flush();
                    Runtime.getRuntime().halt(2);
                }
            });
        }

        CanalConnector connector;
        phase = addr != null ? "creating the connector" : "creating the cluster connector (reading ZooKeeper)";
        try {
            connector = createConnector();
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot set the client id: " + e, e);
        }
        boolean finished = false;
        try {
            phase = "connect()";
            connector.connect();
            if (!noSubscribe) {
                phase = "subscribe()";
                if (filter != null) {
                    connector.subscribe(filter);
                } else {
                    connector.subscribe();
                }
            }
            if (rollbackAfterSubscribe) {
                phase = "rollback() after subscribe";
                connector.rollback();
            }
            connected = true;
            if (connectWatch != null) {
                connectWatch.interrupt();
            }

            boolean rolledBackOnce = false;
            long lastData = System.nanoTime();
            while (true) {
                phase = "getWithoutAck()";
                Message message = connector.getWithoutAck(batch, timeoutMs, TimeUnit.MILLISECONDS);
                if (message == null) {
                    // only when the connector was stopped (stopRunning), which the probe never does
                    throw new IllegalStateException("getWithoutAck returned null");
                }
                long id = message.getId();
                List<CanalEntry.Entry> list = message.getEntries();
                if (id == -1 || list.isEmpty()) {
                    if (id != -1) {
                        // a batch id without entries: canal itself never sends that, but ack it so it does not stick
                        emptyIdBatches++;
                        phase = "ack(" + id + ")";
                        if (!noAck) {
                            connector.ack(id);
                        }
                    }
                    if (System.nanoTime() - lastData >= TimeUnit.MILLISECONDS.toNanos(idleMs)) {
                        break;
                    }
                    continue;
                }
                lastData = System.nanoTime();
                boolean rollbackThis = rollbackFirst && !rolledBackOnce;
                long batchRows = 0;
                phase = "decoding batch " + id;
                synchronized (out) {
                    int index = 0;
                    for (CanalEntry.Entry entry : list) {
                        StringBuilder sb = new StringBuilder(256);
                        batchRows += entryJson(sb, id, index++, entry, rollbackThis);
                        sb.append('\n');
                        out.print(sb);
                    }
                    out.flush();
                }
                entries += list.size();
                if (rollbackThis) {
                    rolledBackOnce = true;
                    rolledBackRows += batchRows;
                    phase = "rollback() after batch " + id;
                    connector.rollback();
                    continue;
                }
                batches++;
                rows += batchRows;
                phase = "ack(" + id + ")";
                if (!noAck) {
                    connector.ack(id);
                }
                if (count > 0 && rows >= count) {
                    break;
                }
            }
            int status = (count > 0 && rows < count) ? 3 : 0;
            if (status == 3) {
                System.err.println("java-client: only " + rows + " of " + count + " rows arrived before "
                                   + idleMs + " ms passed without data");
            }
            finished = true;
            phase = "disconnect()";
            connector.disconnect();
            closeZk();
            synchronized (out) {
                out.print(doneLine(status == 0, status == 0 ? null : "idle", System.nanoTime() - start));
                out.flush();
            }
            return status;
        } finally {
            connected = true; // no connect-timeout halt while an error is being reported
            if (!finished) {
                try {
                    connector.disconnect();
                } catch (Throwable t) {
                    // already failing; keep the first error
                }
                closeZk();
            }
        }
    }

    String target() {
        return (addr != null ? "--addr " + addr : "--zk " + zk) + " destination " + destination;
    }

    /** Closes the ZooKeeper session so the client's ephemeral running node goes away at once. */
    private void closeZk() {
        if (zk != null) {
            try {
                ZkClientx.getZkClient(zk).close();
            } catch (Throwable t) {
                System.err.println("java-client: closing the ZooKeeper client failed: " + t);
            }
        }
    }

    private String doneLine(boolean done, String reason) {
        return doneLine(done, reason, -1);
    }

    private String doneLine(boolean done, String reason, long nanos) {
        StringBuilder sb = new StringBuilder(128);
        sb.append("{\"done\":").append(done);
        if (reason != null) {
            sb.append(",\"reason\":");
            str(sb, reason);
        }
        sb.append(",\"rows\":").append(rows);
        sb.append(",\"batches\":").append(batches);
        sb.append(",\"entries\":").append(entries);
        if (rollbackFirst) {
            sb.append(",\"rolledBackRows\":").append(rolledBackRows);
        }
        if (emptyIdBatches > 0) {
            sb.append(",\"emptyIdBatches\":").append(emptyIdBatches);
        }
        if (nanos >= 0) {
            sb.append(",\"elapsedMs\":").append(TimeUnit.NANOSECONDS.toMillis(nanos));
        }
        sb.append("}\n");
        return sb.toString();
    }

    // ------------------------------------------------------------------ JSON

    /** Appends the JSON of one entry; returns its number of row changes (non-DDL ROWDATA rows). */
    static long entryJson(StringBuilder sb, long batchId, int index, CanalEntry.Entry entry, boolean rolledBack)
        throws com.google.protobuf.InvalidProtocolBufferException {
        CanalEntry.Header h = entry.getHeader();
        sb.append("{\"batchId\":").append(batchId);
        sb.append(",\"entryIndex\":").append(index);
        if (rolledBack) {
            sb.append(",\"rolledBack\":true");
        }
        sb.append(",\"entryType\":");
        str(sb, entry.getEntryType().name());
        sb.append(",\"headerVersion\":").append(h.getVersion());
        sb.append(",\"logfileName\":");
        str(sb, h.getLogfileName());
        sb.append(",\"logfileOffset\":").append(h.getLogfileOffset());
        sb.append(",\"serverId\":").append(h.getServerId());
        sb.append(",\"serverenCode\":");
        str(sb, h.getServerenCode());
        sb.append(",\"executeTime\":").append(h.getExecuteTime());
        sb.append(",\"sourceType\":");
        str(sb, h.getSourceType().name());
        sb.append(",\"schemaName\":");
        str(sb, h.getSchemaName());
        sb.append(",\"tableName\":");
        str(sb, h.getTableName());
        sb.append(",\"eventLength\":").append(h.getEventLength());
        sb.append(",\"eventType\":");
        str(sb, h.getEventType().name());
        sb.append(",\"gtid\":");
        str(sb, h.getGtid());
        props(sb, h.getPropsList());
        sb.append(",\"storeValueLength\":").append(entry.getStoreValue().size());

        long rowCount = 0;
        switch (entry.getEntryType()) {
            case ROWDATA: {
                CanalEntry.RowChange rc = CanalEntry.RowChange.parseFrom(entry.getStoreValue());
                sb.append(",\"tableId\":").append(rc.getTableId());
                sb.append(",\"rowChangeEventType\":");
                str(sb, rc.getEventType().name());
                sb.append(",\"isDdl\":").append(rc.getIsDdl());
                sb.append(",\"sql\":");
                str(sb, rc.getSql());
                sb.append(",\"ddlSchemaName\":");
                str(sb, rc.getDdlSchemaName());
                if (rc.getPropsCount() > 0) {
                    sb.append(",\"rowChangeProps\":");
                    pairs(sb, rc.getPropsList());
                }
                sb.append(",\"rows\":[");
                boolean first = true;
                for (CanalEntry.RowData rd : rc.getRowDatasList()) {
                    if (!first) {
                        sb.append(',');
                    }
                    first = false;
                    sb.append("{\"before\":");
                    columns(sb, rd.getBeforeColumnsList());
                    sb.append(",\"after\":");
                    columns(sb, rd.getAfterColumnsList());
                    props(sb, rd.getPropsList());
                    sb.append('}');
                }
                sb.append(']');
                if (!rc.getIsDdl()) {
                    rowCount = rc.getRowDatasCount();
                }
                break;
            }
            case TRANSACTIONBEGIN: {
                CanalEntry.TransactionBegin tb = CanalEntry.TransactionBegin.parseFrom(entry.getStoreValue());
                sb.append(",\"transactionId\":");
                str(sb, tb.getTransactionId());
                sb.append(",\"threadId\":").append(tb.getThreadId());
                sb.append(",\"transactionExecuteTime\":").append(tb.getExecuteTime());
                if (tb.getPropsCount() > 0) {
                    sb.append(",\"transactionProps\":");
                    pairs(sb, tb.getPropsList());
                }
                break;
            }
            case TRANSACTIONEND: {
                CanalEntry.TransactionEnd te = CanalEntry.TransactionEnd.parseFrom(entry.getStoreValue());
                sb.append(",\"transactionId\":");
                str(sb, te.getTransactionId());
                sb.append(",\"transactionExecuteTime\":").append(te.getExecuteTime());
                if (te.getPropsCount() > 0) {
                    sb.append(",\"transactionProps\":");
                    pairs(sb, te.getPropsList());
                }
                break;
            }
            default:
                break;
        }
        sb.append('}');
        return rowCount;
    }

    private static void columns(StringBuilder sb, List<CanalEntry.Column> cols) {
        sb.append('[');
        boolean first = true;
        for (CanalEntry.Column c : cols) {
            if (!first) {
                sb.append(',');
            }
            first = false;
            sb.append("{\"index\":").append(c.getIndex());
            sb.append(",\"name\":");
            str(sb, c.getName());
            sb.append(",\"isKey\":").append(c.getIsKey());
            sb.append(",\"updated\":").append(c.getUpdated());
            sb.append(",\"isNull\":").append(c.getIsNull());
            sb.append(",\"sqlType\":").append(c.getSqlType());
            sb.append(",\"mysqlType\":");
            str(sb, c.getMysqlType());
            sb.append(",\"length\":").append(c.getLength());
            sb.append(",\"value\":");
            str(sb, c.getValue());
            props(sb, c.getPropsList());
            sb.append('}');
        }
        sb.append(']');
    }

    private static void props(StringBuilder sb, List<CanalEntry.Pair> props) {
        if (!props.isEmpty()) {
            sb.append(",\"props\":");
            pairs(sb, props);
        }
    }

    private static void pairs(StringBuilder sb, List<CanalEntry.Pair> props) {
        sb.append('[');
        boolean first = true;
        for (CanalEntry.Pair p : props) {
            if (!first) {
                sb.append(',');
            }
            first = false;
            sb.append("{\"key\":");
            str(sb, p.getKey());
            sb.append(",\"value\":");
            str(sb, p.getValue());
            sb.append('}');
        }
        sb.append(']');
    }

    /** Appends s as a JSON string: escapes '"', '\\' and control characters, keeps everything else as is. */
    static void str(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char ch = s.charAt(i);
            switch (ch) {
                case '"':
                    sb.append("\\\"");
                    break;
                case '\\':
                    sb.append("\\\\");
                    break;
                default:
                    if (ch < 0x20 || ch == 0x7f || ch == '\u2028' || ch == '\u2029') {
                        sb.append(String.format("\\u%04x", (int) ch));
                    } else {
                        sb.append(ch);
                    }
            }
        }
        sb.append('"');
    }
}
