//! Loading whole configuration directories.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use super::*;
use crate::binlog::position::StartPosition;

/// A configuration directory under the system temp dir, removed on drop.
struct TempConf(PathBuf);

impl TempConf {
    fn new(canal_properties: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "canal-config-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(SERVER_FILE), canal_properties).unwrap();
        TempConf(dir)
    }

    fn instance(self, destination: &str, text: &str) -> Self {
        let dir = self.0.join(destination);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(INSTANCE_FILE), text).unwrap();
        self
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn load(&self, env: &[(&str, &str)]) -> Result<CanalConfig, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load(&self.0, &env)
    }

    fn error(&self, env: &[(&str, &str)]) -> String {
        self.load(env).unwrap_err().to_string()
    }
}

impl Drop for TempConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SEED_SERVER: &str = "\
#################################################
######### 		common argument		#############
#################################################
canal.port = 11111
canal.metrics.pull.port = 11112
canal.admin.port = 11110
canal.zkServers = 127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183
canal.instance.global.spring.xml = classpath:spring/default-instance.xml
canal.destinations = example
";

const SEED_INSTANCE: &str = r"#################################################
## mysql serverId , v1.0.26+ will autoGen
canal.instance.mysql.slaveId=1234

# enable gtid use true/false
#canal.instance.gtidon=false

# position info
canal.instance.master.address=127.0.0.1:3306
#canal.instance.master.journal.name=
#canal.instance.master.position=
#canal.instance.master.timestamp=
#canal.instance.master.gtid=

# username/password
canal.instance.dbUsername=canal
canal.instance.dbPassword=canal
canal.instance.connectionCharset = UTF-8
# enable druid Decrypt database password
#canal.instance.enableDruid=false

# table regex
canal.instance.filter.regex=.*\\..*
# table black regex
#canal.instance.filter.black.regex=mysql\\.slave_.*
# table field filter(format: schema1.tableName1:field1/field2,schema2.tableName2:field1/field2)
#canal.instance.filter.field=test1.t_product:id/subject/keywords,test2.t_company:id/name/contact/ch
#################################################
";

fn seed() -> TempConf {
    TempConf::new(SEED_SERVER).instance("example", SEED_INSTANCE)
}

#[test]
fn seed_configuration_loads_unchanged() {
    let conf = seed();
    let config = conf.load(&[]).unwrap();
    assert_eq!(config.warnings, Vec::<String>::new());

    let server = &config.server;
    assert_eq!(server.ip, "0.0.0.0");
    assert_eq!(server.register_ip, None);
    assert_eq!(server.port, 11111);
    assert_eq!(server.metrics_port, 11112);
    assert_eq!(server.admin_port, 11110);
    assert_eq!(
        (server.user.as_deref(), server.passwd.as_deref()),
        (None, None)
    );
    assert_eq!(
        server.zookeeper.servers.as_deref(),
        Some("127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183")
    );
    assert_eq!(server.zookeeper.flush_period, Duration::from_millis(1000));
    assert_eq!(
        server.zookeeper.session_timeout,
        Duration::from_millis(6000)
    );
    assert_eq!(
        server.zookeeper.connection_timeout,
        Duration::from_millis(3000)
    );
    assert_eq!(server.zookeeper.race_delay, Duration::from_millis(200));
    assert_eq!(server.zookeeper.fence_fraction, 0.5);
    assert_eq!(server.destinations, vec!["example".to_owned()]);
    assert_eq!(server.conf_dir, conf.path());
    assert_eq!(server.storage, StorageProfile::ZooKeeper);
    assert_eq!(server.file_data_dir, None);

    assert_eq!(config.instances.len(), 1);
    let example = config.instance("example").unwrap();
    assert_eq!(example.destination, "example");
    assert_eq!(
        example.path,
        conf.path().join("example/instance.properties")
    );
    assert_eq!(example.data_dir, conf.path().join("example"));
    assert_eq!(example.storage, StorageProfile::ZooKeeper);
    assert_eq!(example.slave_id, 1234);
    assert_eq!(example.master.to_string(), "127.0.0.1:3306");
    assert_eq!(example.master.port, 3306);
    assert_eq!(example.start, None);
    assert!(!example.gtid_on);
    assert_eq!(example.db_username, "canal");
    assert_eq!(example.db_password, "canal");
    assert_eq!(example.connection_charset, "UTF-8");
    assert_eq!(example.filter_texts.regex, r".*\..*");
    assert_eq!(example.filter_texts.black_regex, r"mysql\.slave_.*");
    assert_eq!(example.filter_texts.field, "");
    assert!(example.filter.tables.matches("shop", "orders"));
    assert!(
        !example
            .filter
            .tables
            .matches("mysql", "slave_relay_log_info")
    );
    assert!(example.filter.columns.is_empty());
    assert_eq!(example.switches, FilterSwitches::default());
    assert_eq!(
        example.memory,
        MemoryStoreConfig {
            buffer_size: 16384,
            memunit: 1024,
            batch_mode: BatchMode::MemSize
        }
    );
    assert!(!example.get_ddl_isolation);
    assert_eq!(example.time_zone, jiff::tz::TimeZone::UTC);
    assert!(!example.enum_set_labels);
    assert_eq!(example.heartbeat, Duration::from_millis(5000));

    let options = example.decoder_options();
    assert!(!options.gtid_header && !options.filter_rows && !options.values.enum_set_labels);
}

#[test]
fn environment_wins_and_unknown_env_keys_warn() {
    let conf = seed();
    let config = conf
        .load(&[
            ("canal.port", "22222"),
            ("canal.instance.master.address", "db:3307"),
            ("canal.instance.dbPassword", " secret "),
            ("canal.instance.enum.set.labels", "true"),
            ("canal.instance.timezone", "Asia/Shanghai"),
            ("canal.instance.gtidon", "TRUE"),
            ("canal.instance.filter.dml.delete", "true"),
            ("canal.instance.filter.regex", r"shop\..*"),
            ("canal.instnace.filter.regex", "x"),
            ("PATH", "/usr/bin"),
        ])
        .unwrap();
    assert_eq!(config.server.port, 22222);
    let example = &config.instances[0];
    assert_eq!(example.master.to_string(), "db:3307");
    assert_eq!(example.db_password, " secret ");
    assert!(example.filter.tables.matches("shop", "x"));
    assert!(!example.filter.tables.matches("other", "x"));
    let options = example.decoder_options();
    assert!(options.values.enum_set_labels && options.gtid_header && options.filter_delete);
    assert_eq!(options.values.time_zone.iana_name(), Some("Asia/Shanghai"));
    assert_eq!(
        config.warnings,
        vec![
            "unknown key canal.instnace.filter.regex in environment variable \
             canal.instnace.filter.regex is ignored (did you mean canal.instance.filter.regex?)"
                .to_owned()
        ]
    );
}

#[test]
fn precedence_instance_over_global_over_default() {
    let server = format!(
        "{}canal.instance.memory.buffer.size = 1024\n\
         canal.instance.filter.query.ddl = true\n\
         canal.instance.memory.buffer.memunit = 512\n\
         canal.file.data.dir = ${{canal.conf.dir:..}}/data\n",
        SEED_SERVER.replace(
            "canal.destinations = example",
            "canal.destinations = example,orders"
        )
    );
    let conf = TempConf::new(&server)
        .instance(
            "example",
            "canal.instance.master.address=a:1\n\
             canal.instance.dbUsername=u\n\
             canal.instance.memory.buffer.memunit=2048\n\
             canal.instance.filter.black.regex=\n",
        )
        .instance(
            "orders",
            "canal.instance.master.address=b:2\n\
             canal.instance.dbUsername=u\n\
             canal.instance.filter.query.ddl=false\n",
        );
    let config = conf.load(&[]).unwrap();
    assert_eq!(config.warnings, Vec::<String>::new());
    let [example, orders] = &config.instances[..] else {
        panic!("two instances")
    };
    assert_eq!(example.memory.buffer_size, 1024);
    assert_eq!(orders.memory.buffer_size, 1024);
    assert!(example.switches.query_ddl && !orders.switches.query_ddl);
    assert_eq!((example.memory.memunit, orders.memory.memunit), (2048, 512));
    // Explicitly empty black filter: nothing excluded.
    assert_eq!(example.filter_texts.black_regex, "");
    assert!(example.filter.tables.matches("mysql", "slave_master_info"));
    assert!(!orders.filter.tables.matches("mysql", "slave_master_info"));
    // The placeholder default `..` resolved against the configuration dir.
    let data = conf.path().join("../data");
    assert_eq!(config.server.file_data_dir.as_deref(), Some(data.as_path()));
    assert_eq!(orders.data_dir, data.join("orders"));
}

#[test]
fn start_positions() {
    let start = |lines: &str| {
        let conf = TempConf::new(SEED_SERVER).instance(
            "example",
            &format!("canal.instance.master.address=a:1\ncanal.instance.dbUsername=u\n{lines}"),
        );
        let config = conf.load(&[]).unwrap();
        (config.instances[0].start.clone(), config.warnings)
    };
    let file = |name: &str, position| {
        Some(StartPosition::FilePosition {
            journal_name: name.to_owned(),
            position,
        })
    };
    assert_eq!(
        start(
            "canal.instance.master.journal.name=mysql-bin.000003\n\
             canal.instance.master.position=154\n\
             canal.instance.master.timestamp=1700000000000\n"
        )
        .0,
        file("mysql-bin.000003", 154)
    );
    assert_eq!(
        start("canal.instance.master.journal.name=mysql-bin.000003\n").0,
        file("mysql-bin.000003", 4)
    );
    assert_eq!(
        start(
            "canal.instance.master.timestamp=1700000000000\n\
             canal.instance.master.gtid=0-1-5\n"
        )
        .0,
        Some(StartPosition::Timestamp(1_700_000_000_000))
    );
    let (gtid, _) = start(
        "canal.instance.master.journal.name=\n\
         canal.instance.master.position=0\n\
         canal.instance.master.gtid=3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5\n",
    );
    assert!(matches!(gtid, Some(StartPosition::Gtid(_))), "{gtid:?}");
    let (ts, warnings) = start("canal.instance.master.timestamp=1700000000\n");
    assert_eq!(ts, Some(StartPosition::Timestamp(1_700_000_000)));
    assert!(warnings[0].contains("milliseconds"), "{warnings:?}");
}

#[test]
fn invalid_values_name_key_file_and_line() {
    let conf = seed();
    let server_file = conf.path().join("canal.properties");
    let instance_file = conf.path().join("example/instance.properties");

    let bad_port = TempConf::new(&SEED_SERVER.replace("canal.port = 11111", "canal.port = 11x11"))
        .instance("example", SEED_INSTANCE);
    assert_eq!(
        bad_port.error(&[]),
        format!(
            "canal.port = \"11x11\" in {} line 4: expected a TCP port number (1-65535)",
            bad_port.path().join("canal.properties").display()
        )
    );
    assert_eq!(
        conf.error(&[("canal.metrics.pull.port", "0")]),
        "canal.metrics.pull.port = \"0\" in environment variable canal.metrics.pull.port: \
         expected a TCP port number (1-65535)"
    );

    let err = conf.error(&[("canal.instance.filter.regex", r"ok\..*,bad(")]);
    assert!(
        err.starts_with(
            "canal.instance.filter.regex = \"ok\\..*,bad(\" in environment variable \
             canal.instance.filter.regex: expected comma-separated regular expressions"
        ),
        "{err}"
    );
    let bad_regex = TempConf::new(SEED_SERVER).instance(
        "example",
        &SEED_INSTANCE.replace(
            "#canal.instance.filter.black.regex=mysql\\\\.slave_.*",
            "canal.instance.filter.black.regex=[",
        ),
    );
    let err = bad_regex.error(&[]);
    assert!(
        err.starts_with(&format!(
            "canal.instance.filter.black.regex = \"[\" in {} line 25",
            bad_regex
                .path()
                .join("example/instance.properties")
                .display()
        )),
        "{err}"
    );
    assert_eq!(
        conf.error(&[("canal.ip", "canal-0.canal")]),
        "canal.ip = \"canal-0.canal\" in environment variable canal.ip: expected an IP address \
         of this host to listen on, such as 0.0.0.0 or 10.0.0.5 (host names are not resolved)"
    );
    assert_eq!(conf.load(&[("canal.ip", "::1")]).unwrap().server.ip, "::1");

    // canal's stock canal.conf.dir under a --conf directory not called conf.
    let err = conf.error(&[("canal.conf.dir", "../conf")]);
    assert!(
        err.starts_with(
            "destination \"example\" (canal.destinations) has no instance configuration"
        ) && err.ends_with(&format!(
            "; remove canal.conf.dir to use {})",
            conf.path().display()
        )),
        "{err}"
    );

    let err = conf.error(&[("canal.instance.filter.field", "no-colon")]);
    assert!(err.starts_with("canal.instance.filter.field = "), "{err}");

    let err = conf.error(&[("canal.instance.memory.buffer.size", "1000")]);
    assert!(
        err.starts_with("canal.instance.memory.buffer.size = \"1000\"")
            && err.contains("power of two"),
        "{err}"
    );

    let err = conf.error(&[(
        "canal.instance.global.spring.xml",
        "classpath:spring/group-instance.xml",
    )]);
    assert!(
        err.starts_with(
            "canal.instance.global.spring.xml = \"classpath:spring/group-instance.xml\""
        ) && err.contains("file-instance.xml"),
        "{err}"
    );

    let kafka = TempConf::new(&format!("{SEED_SERVER}canal.serverMode = kafka\n"))
        .instance("example", SEED_INSTANCE);
    let err = kafka.error(&[]);
    assert!(
        err.starts_with(&format!(
            "canal.serverMode = \"kafka\" in {} line 10",
            kafka.path().join("canal.properties").display()
        )) && err.contains("only the tcp server mode is supported"),
        "{err}"
    );

    let err = conf.error(&[("canal.destinations", "example,orders")]);
    assert!(
        err.contains("\"orders\"")
            && err.contains(
                &conf
                    .path()
                    .join("orders/instance.properties")
                    .display()
                    .to_string()
            ),
        "{err}"
    );
    for names in ["a,a", "../x", "a b", "."] {
        let err = conf.error(&[("canal.destinations", names)]);
        assert!(err.starts_with("canal.destinations = "), "{names}: {err}");
    }

    let err = conf.error(&[("canal.instance.master.address", "db")]);
    assert!(err.contains("host:port"), "{err}");
    let err = conf.error(&[("canal.passwd", "secret")]);
    assert!(
        err.starts_with("canal.passwd = ") && err.contains("SHA1"),
        "{err}"
    );
    let err = conf.error(&[("canal.instance.timezone", "Mars/Olympus")]);
    assert!(err.contains("IANA"), "{err}");
    let err = conf.error(&[("canal.instance.master.gtid", "nonsense")]);
    assert!(err.starts_with("canal.instance.master.gtid = "), "{err}");
    let err = conf.error(&[("canal.instance.gtidon", "yes")]);
    assert!(err.contains("true or false"), "{err}");
    let err = conf.error(&[("canal.zookeeper.fence.fraction", "1")]);
    assert!(err.starts_with("canal.zookeeper.fence.fraction"), "{err}");
    let err = conf.error(&[("canal.instance.enableDruid", "true")]);
    assert!(err.contains("plain password"), "{err}");
    let err = conf.error(&[("canal.zkServers", "")]);
    assert!(err.contains("canal.zkServers is not set"), "{err}");

    let no_address = TempConf::new(SEED_SERVER).instance(
        "example",
        &SEED_INSTANCE.replace("canal.instance.master.address=127.0.0.1:3306", ""),
    );
    let err = no_address.error(&[]);
    assert!(
        err.starts_with("canal.instance.master.address is not set for destination \"example\"")
            && err.contains(
                &instance_file
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .to_string()
            ),
        "{err}"
    );

    let missing = TempConf::new(SEED_SERVER);
    let err = missing.error(&[]);
    assert!(
        err.contains(
            &missing
                .path()
                .join("example/instance.properties")
                .display()
                .to_string()
        ),
        "{err}"
    );
    let nothing = TempConf(std::env::temp_dir().join("canal-config-test-does-not-exist"));
    let err = nothing.error(&[]);
    assert!(
        err.starts_with("cannot read ") && err.contains("canal.properties"),
        "{err}"
    );
    let _ = (server_file, instance_file);
}

/// canal 1.1.x's stock files: everything loads; the canal features this
/// server lacks are reported once per family.
#[test]
fn stock_canal_files_load_with_warnings() {
    let server = r"#################################################
#########               common argument         #############
#################################################
# tcp bind ip
canal.ip =
# register ip to zookeeper
canal.register.ip =
canal.port = 11111
canal.metrics.pull.port = 11112
# canal instance user/passwd
# canal.user = canal
# canal.passwd = E3619321C1A937C46A0D8BD1DAC39F93B27D4458

# canal admin config
#canal.admin.manager = 127.0.0.1:8089
canal.admin.port = 11110
canal.admin.user = admin
canal.admin.passwd = 4ACFE3202A5FF5CF467898FC58AAB1D615029441
# admin auto register
#canal.admin.register.auto = true
#canal.admin.register.cluster =
#canal.admin.register.name =

canal.zkServers =
# flush data to zk
canal.zookeeper.flush.period = 1000
canal.withoutNetty = false
# tcp, kafka, rocketMQ, rabbitMQ, pulsarMQ
canal.serverMode = tcp
# flush meta cursor/parse position to file
canal.file.data.dir = ${canal.conf.dir}
canal.file.flush.period = 1000
## memory store RingBuffer size, should be Math.pow(2,n)
canal.instance.memory.buffer.size = 16384
## memory store RingBuffer used memory unit size , default 1kb
canal.instance.memory.buffer.memunit = 1024 
## meory store gets mode used MEMSIZE or ITEMSIZE
canal.instance.memory.batch.mode = MEMSIZE
canal.instance.memory.rawEntry = true

## detecing config
canal.instance.detecting.enable = false
#canal.instance.detecting.sql = insert into retl.xdual values(1,now()) on duplicate key update x=now()
canal.instance.detecting.sql = select 1
canal.instance.detecting.interval.time = 3
canal.instance.detecting.retry.threshold = 3
canal.instance.detecting.heartbeatHaEnable = false

# support maximum transaction size, more than the size of the transaction will be cut into multiple transactions delivery
canal.instance.transaction.size =  1024
# mysql fallback connected to new master should fallback times
canal.instance.fallbackIntervalInSeconds = 60

# network config
canal.instance.network.receiveBufferSize = 16384
canal.instance.network.sendBufferSize = 16384
canal.instance.network.soTimeout = 30

# binlog filter config
canal.instance.filter.druid.ddl = true
canal.instance.filter.query.dcl = false
canal.instance.filter.query.dml = false
canal.instance.filter.query.ddl = false
canal.instance.filter.table.error = false
canal.instance.filter.rows = false
canal.instance.filter.transaction.entry = false
canal.instance.filter.dml.insert = false
canal.instance.filter.dml.update = false
canal.instance.filter.dml.delete = false

# binlog format/image check
canal.instance.binlog.format = ROW,STATEMENT,MIXED
canal.instance.binlog.image = FULL,MINIMAL,NOBLOB

# binlog ddl isolation
canal.instance.get.ddl.isolation = false

# parallel parser config
canal.instance.parser.parallel = true
## concurrent thread number, default 60% available processors, suggest not to exceed Runtime.getRuntime().availableProcessors()
#canal.instance.parser.parallelThreadSize = 16
## disruptor ringbuffer size, must be power of 2
canal.instance.parser.parallelBufferSize = 256

# table meta tsdb info
canal.instance.tsdb.enable = true
canal.instance.tsdb.dir = ${canal.file.data.dir:../conf}/${canal.instance.destination:}
canal.instance.tsdb.url = jdbc:h2:${canal.instance.tsdb.dir}/h2;CACHE_SIZE=1000;MODE=MYSQL;
canal.instance.tsdb.dbUsername = canal
canal.instance.tsdb.dbPassword = canal
# dump snapshot interval, default 24 hour
canal.instance.tsdb.snapshot.interval = 24
# purge snapshot expire , default 360 hour(15 days)
canal.instance.tsdb.snapshot.expire = 360

#################################################
#########               destinations            #############
#################################################
canal.destinations = example
# conf root dir
canal.conf.dir = ../conf
# auto scan instance dir add/remove and start/stop instance
canal.auto.scan = true
canal.auto.scan.interval = 5
# set this value to 'true' means that when binlog pos not found, skip to latest.
# WARN: pls keep 'false' in production env, or if you know what you want.
canal.auto.reset.latest.pos.mode = false

canal.instance.tsdb.spring.xml = classpath:spring/tsdb/h2-tsdb.xml
#canal.instance.tsdb.spring.xml = classpath:spring/tsdb/mysql-tsdb.xml

canal.instance.global.mode = spring
canal.instance.global.lazy = false
canal.instance.global.manager.address = ${canal.admin.manager:}
#canal.instance.global.spring.xml = classpath:spring/memory-instance.xml
canal.instance.global.spring.xml = classpath:spring/file-instance.xml
#canal.instance.global.spring.xml = classpath:spring/default-instance.xml

##################################################
#########             MQ Properties      #############
##################################################
# aliyun ak/sk , support rds/mq
canal.aliyun.accessKey =
canal.aliyun.secretKey =
canal.aliyun.uid=

canal.mq.flatMessage = true
canal.mq.canalBatchSize = 50
kafka.bootstrap.servers = 127.0.0.1:9092
kafka.acks = all
";
    let instance = r"#################################################
## mysql serverId , v1.0.26+ will autoGen
# canal.instance.mysql.slaveId=0

# enable gtid use true/false
canal.instance.gtidon=false

# position info
canal.instance.master.address=127.0.0.1:3306
canal.instance.master.journal.name=
canal.instance.master.position=
canal.instance.master.timestamp=
canal.instance.master.gtid=

# rds oss binlog
canal.instance.rds.accesskey=
canal.instance.rds.secretkey=
canal.instance.rds.instanceId=

# table meta tsdb info
canal.instance.tsdb.enable=true

# username/password
canal.instance.dbUsername=canal
canal.instance.dbPassword=canal
canal.instance.connectionCharset = UTF-8
# enable druid Decrypt database password
canal.instance.enableDruid=false
#canal.instance.pwdPublicKey=MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBALK4BUxdDltRRE5/zXpVEVPUgunvscYFtEip3pmLlhrWpacX7y7GCMo2/JM6LeHmiiNdH1FWgGCpUfircSwlWKUCAwEAAQ==

# table regex
canal.instance.filter.regex=.*\\..*
# table black regex
canal.instance.filter.black.regex=mysql\\.slave_.*

# mq config
canal.mq.topic=example
canal.mq.partition=0
# multi stream for polardbx
canal.instance.multi.stream.on=false
#################################################
";
    // The stock conf.dir `../conf` names the configuration directory when
    // it is called `conf`, as in canal's layout.
    let root = TempConf::new("");
    let conf_dir = root.path().join("conf");
    std::fs::create_dir_all(conf_dir.join("example")).unwrap();
    std::fs::write(conf_dir.join(SERVER_FILE), server).unwrap();
    std::fs::write(conf_dir.join("example").join(INSTANCE_FILE), instance).unwrap();
    let config = load(&conf_dir, &HashMap::new()).unwrap();

    let server_file = conf_dir.join(SERVER_FILE).display().to_string();
    let instance_file = conf_dir
        .join("../conf/example/instance.properties")
        .display()
        .to_string();
    assert_eq!(config.server.storage, StorageProfile::File);
    assert_eq!(config.server.zookeeper.servers, None);
    assert_eq!(config.server.conf_dir, conf_dir.join("../conf"));
    assert_eq!(config.instances[0].slave_id, 0);
    assert_eq!(config.instances[0].start, None);
    assert_eq!(
        config.instances[0].data_dir,
        conf_dir.join("../conf").join("example")
    );
    let expected_prefixes = [
        format!("canal.instance.tsdb.enable (line 21) in {instance_file} has no effect"),
        format!(
            "canal.mq.topic (line 37), canal.mq.partition (line 38) in {instance_file} have no effect"
        ),
        format!(
            "canal.admin.user (line 17), canal.admin.passwd (line 18) in {server_file} have no effect"
        ),
        format!(
            "canal.instance.parser.parallel (line 79), canal.instance.parser.parallelBufferSize (line 83) in {server_file}"
        ),
        "canal.instance.tsdb.enable (line 86), canal.instance.tsdb.dir (line 87), ".to_owned(),
        format!("canal.auto.scan (line 103) in {server_file} has no effect"),
        format!(
            "canal.mq.flatMessage (line 127), canal.mq.canalBatchSize (line 128) in {server_file}"
        ),
    ];
    assert_eq!(
        config.warnings.len(),
        expected_prefixes.len(),
        "{:#?}",
        config.warnings
    );
    for (warning, prefix) in config.warnings.iter().zip(&expected_prefixes) {
        assert!(
            warning.starts_with(prefix.as_str()),
            "{warning}\nwanted {prefix}"
        );
    }
}

#[test]
fn zookeeper_keeps_cursors_whatever_the_profile_says() {
    let conf = seed();
    let config = conf
        .load(&[(
            "canal.instance.global.spring.xml",
            "classpath:spring/file-instance.xml",
        )])
        .unwrap();
    assert_eq!(
        config.warnings,
        vec![
            "destination \"example\": the storage profile (file-instance.xml) keeps cursors on \
             local disk in canal; with canal.zkServers set, canal-server keeps them in ZooKeeper \
             so that any server can resume the destination"
                .to_owned()
        ]
    );
    let config = conf
        .load(&[(
            "canal.instance.global.spring.xml",
            "classpath:spring/default-instance.xml",
        )])
        .unwrap();
    assert_eq!(config.warnings, Vec::<String>::new());
}

#[test]
fn empty_destinations_scan_the_conf_dir() {
    let instance = "canal.instance.master.address=a:1\ncanal.instance.dbUsername=u\n";
    let conf = TempConf::new("canal.destinations =\n")
        .instance("b", instance)
        .instance("a", instance);
    std::fs::create_dir_all(conf.path().join("spring")).unwrap();
    let config = conf.load(&[]).unwrap();
    assert_eq!(
        config.server.destinations,
        vec!["a".to_owned(), "b".to_owned()]
    );
    assert_eq!(config.server.storage, StorageProfile::File);
}

#[test]
fn per_destination_spring_xml_and_server_keys_in_instance_files() {
    let server = "canal.destinations = a\n\
                  canal.instance.a.spring.xml = memory-instance.xml\n\
                  canal.instance.zz.spring.xml = memory-instance.xml\n";
    let conf = TempConf::new(server).instance(
        "a",
        "canal.instance.master.address=a:1\ncanal.instance.dbUsername=u\ncanal.port=1\n",
    );
    let config = conf.load(&[]).unwrap();
    assert_eq!(config.instances[0].storage, StorageProfile::Memory);
    assert_eq!(config.server.port, 11111);
    assert_eq!(config.warnings.len(), 2, "{:#?}", config.warnings);
    assert!(
        config.warnings[0].starts_with("canal.port in "),
        "{}",
        config.warnings[0]
    );
    assert!(
        config.warnings[1].contains("\"zz\" is not listed"),
        "{}",
        config.warnings[1]
    );
}

#[test]
fn zookeeper_digest_auth_is_read_and_never_echoed() {
    let conf = seed();
    assert_eq!(conf.load(&[]).unwrap().server.zookeeper.auth, None);
    let config = conf
        .load(&[("canal.zookeeper.auth", "canal:pa:ss")])
        .unwrap();
    assert_eq!(config.warnings, Vec::<String>::new());
    let auth = config.server.zookeeper.auth.clone().unwrap();
    assert_eq!(auth.credentials(), b"canal:pa:ss");
    assert!(!format!("{config:?}").contains("pa:ss"));
    let err = conf.error(&[("canal.zookeeper.auth", "onlysecret")]);
    assert!(
        err.starts_with("canal.zookeeper.auth = ") && !err.contains("onlysecret"),
        "{err}"
    );
}

#[test]
fn key_scope_places_keys_and_says_why_not() {
    assert_eq!(key_scope("canal.port"), Ok(KeyScope::Server));
    assert_eq!(
        key_scope("canal.instance.filter.regex"),
        Ok(KeyScope::Instance)
    );
    let unknown = key_scope("canal.instnace.filter.regex").unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "canal.instnace.filter.regex is not a canal-server key \
         (did you mean canal.instance.filter.regex?)"
    );
    let far = key_scope("canal.zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz").unwrap_err();
    assert_eq!(
        far.to_string(),
        "canal.zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz is not a canal-server key"
    );
}
