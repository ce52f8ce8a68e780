//! The agent watching real databases and middleware on this machine (issue 4): PostgreSQL with
//! pg_stat_statements, MariaDB, Redis, NATS, HTTP/TCP probes and processes. Each target's
//! metrics must be present and plausible on the agent's /metrics and in the collector; a closed
//! port gives `*_up 0` while the others keep flowing; wrong credentials give a clear reason in
//! the log and the inventory without a retry storm; a deliberately slow query shows up in top
//! SQL; the inventory search finds every target by type, campus, system and address.
//! Services absent here are a loud failure, never a skip.

use std::process::Command;
use std::time::Duration;
use tingzhen_tests::agent::AgentOpts;
use tingzhen_tests::{Agent, Collector, hostname, now_ms, ports, wait};

/// Runs SQL through `psql` as the local superuser (trust auth on 127.0.0.1, as on this machine).
fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("run psql (PostgreSQL client must be installed)");
    assert!(out.status.success(), "psql {sql:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Makes sure pg_stat_statements is loaded and created in database `test`. Idempotent: the
/// local cluster is restarted only when the library is not preloaded yet.
fn ensure_pg_stat_statements() {
    let preload = psql("test", "SHOW shared_preload_libraries");
    if !preload.split(',').any(|l| l.trim() == "pg_stat_statements") {
        let list = if preload.trim().is_empty() {
            "pg_stat_statements".to_string()
        } else {
            format!("{preload},pg_stat_statements")
        };
        psql("test", &format!("ALTER SYSTEM SET shared_preload_libraries = '{list}'"));
        let version = std::fs::read_dir("/etc/postgresql")
            .expect("/etc/postgresql (Debian's PostgreSQL) must exist")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .max()
            .expect("a PostgreSQL cluster version under /etc/postgresql");
        let st = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &version, "main", "restart"])
            .status()
            .expect("run pg_ctlcluster");
        assert!(st.success(), "pg_ctlcluster restart failed");
        wait::until_60s("PostgreSQL back after the restart", |last| {
            let out = Command::new("psql")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-Atc", "SHOW shared_preload_libraries"])
                .output()
                .ok()?;
            *last = String::from_utf8_lossy(&out.stderr).into_owned();
            (out.status.success() && String::from_utf8_lossy(&out.stdout).contains("pg_stat_statements")).then_some(())
        });
    }
    psql("test", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
}

/// The value of the first sample of `name` whose labels include `target="<target>"` (and
/// every `extra` label), from a text exposition page.
fn sample(page: &str, name: &str, target: &str, extra: &[(&str, &str)]) -> Option<f64> {
    let want = format!("target=\"{target}\"");
    page.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| l.contains(&want))
        .filter(|l| extra.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

fn secret_file(agent_dir: &std::path::Path, name: &str, value: &str) -> String {
    let p = agent_dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    p.display().to_string()
}

#[test]
fn postgres_target_metrics_top_sql_failures_and_inventory_search() {
    ensure_pg_stat_statements();
    let coll = Collector::start_default();
    let token = coll.create_token("pg-agent", "ingest,query", None);
    let dir = tempfile::tempdir().unwrap();
    let pass = secret_file(dir.path(), "pg.pass", "not-the-password");
    let closed = ports::free_port();
    let toml = format!(
        r#"heartbeat_interval = "1s"

[[targets]]
name = "his-pg"
type = "postgres"
address = "127.0.0.1:5432"
database = "test"
campus = "east"
system = "HIS"
interval = "2s"
top_sql = 20

[[targets]]
name = "pg-closed"
type = "postgres"
address = "127.0.0.1:{closed}"
campus = "west"
system = "LIS"
interval = "1s"

[[targets]]
name = "pg-badauth"
type = "postgres"
address = "127.0.0.1:5432"
username = "tz_no_such_role"
password = {{ file = "{pass}" }}
interval = "1s"
"#
    );
    let mut agent = Agent::start(AgentOpts {
        collector: Some(coll.base_url()),
        token: Some(token.clone()),
        interval: Some("1s".into()),
        config_toml: Some(toml),
        ..Default::default()
    });

    // Up, down and refused, each on its own schedule.
    let page = wait::until_60s("pg targets reported on /metrics", |last| {
        let p = agent.scrape();
        let got = (
            sample(&p, "pg_up", "his-pg", &[]),
            sample(&p, "pg_up", "pg-closed", &[]),
            sample(&p, "pg_up", "pg-badauth", &[]),
        );
        *last = format!("{got:?}");
        (got == (Some(1.0), Some(0.0), Some(0.0))).then_some(p)
    });
    let max_conn = sample(&page, "pg_settings_max_connections", "his-pg", &[]).unwrap();
    assert!(max_conn >= 1.0, "max_connections {max_conn}");
    let size = sample(&page, "pg_database_size_bytes", "his-pg", &[("datname", "test")]).unwrap();
    assert!(size > 1_000_000.0, "database test is {size} bytes");
    assert!(sample(&page, "pg_stat_activity_count", "his-pg", &[]).unwrap() >= 1.0, "our own connection counts");
    assert!(sample(&page, "pg_stat_database_xact_commit", "his-pg", &[("datname", "test")]).unwrap() >= 1.0);
    assert!(sample(&page, "pg_postmaster_start_time_seconds", "his-pg", &[]).unwrap() > 1.0e9);
    assert!(sample(&page, "pg_tablespace_size_bytes", "his-pg", &[("tablespace", "pg_default")]).unwrap() > 0.0);
    assert!(sample(&page, "pg_wal_lsn_bytes_total", "his-pg", &[]).unwrap() > 0.0);
    assert!(page.contains("campus=\"east\"") && page.contains("system=\"HIS\""));
    assert!(page.contains(r#"pg_static{"#) && page.contains("short_version="));

    // A deliberately slow statement shows up in top SQL at the collector.
    let host = hostname();
    let marker = format!("tz_slow_{}", now_ms());
    let slow = format!("SELECT pg_sleep(1.2), '{marker}'");
    let snapshot = wait::until_60s("the slow query in /api/v1/db/top-sql", |last| {
        psql("test", &slow);
        let r = coll
            .http()
            .get(&coll.url("/api/v1/db/top-sql"), Some(&token), &[("host", host.as_str()), ("target", "his-pg")])
            .ok()?;
        *last = format!("{} {}", r.status, &r.body[..r.body.len().min(400)]);
        let v = r.json();
        v["data"].as_array()?.iter().find_map(|snap| {
            snap["statements"]
                .as_array()?
                .iter()
                .find(|s| s["query"].as_str().unwrap_or("").contains("pg_sleep"))
                .cloned()
        })
    });
    assert!(snapshot["total_time_ms"].as_f64().unwrap() >= 1000.0, "{snapshot}");
    assert!(snapshot["calls"].as_u64().unwrap() >= 1, "{snapshot}");
    assert_eq!(snapshot["database"], "test", "{snapshot}");
    assert!(!snapshot["query"].as_str().unwrap().contains(&marker), "literals are normalised away: {snapshot}");

    // The metrics also reach the collector through the shipper.
    let client = coll.client(&token);
    wait::until_60s("pg_up of every target in the collector", |last| {
        let r = client.query("pg_up", now_ms());
        *last = format!("{r:?}");
        let v = r.vector();
        let by = |t: &str| v.iter().find(|(k, _)| k.contains(&format!("target={t:?}"))).map(|(_, s)| s.1);
        (by("his-pg") == Some(1.0) && by("pg-closed") == Some(0.0) && by("pg-badauth") == Some(0.0)).then_some(())
    });

    // Inventory: type, address, campus, system, status and the reason, searchable.
    let search = |q: &str| {
        let r = coll.http().get(&coll.url("/api/v1/inventory"), Some(&token), &[("q", q)]).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["data"]["targets"].as_array().cloned().unwrap_or_default()
    };
    let found = wait::until_60s("the failing targets' reasons in the inventory", |last| {
        let t = search("postgres");
        *last = serde_json::to_string(&t).unwrap();
        let reason = |name: &str| {
            t.iter().find(|x| x["name"] == name).map(|x| x["last_error"].as_str().unwrap_or("").to_string())
        };
        (t.len() == 3
            && reason("pg-closed").is_some_and(|r| !r.is_empty())
            && reason("pg-badauth").is_some_and(|r| !r.is_empty()))
        .then_some(t)
    });
    let by_name = |n: &str| found.iter().find(|x| x["name"] == n).unwrap().clone();
    let ok = by_name("his-pg");
    assert_eq!(
        (ok["status"].as_str(), ok["campus"].as_str(), ok["system"].as_str()),
        (Some("up"), Some("east"), Some("HIS"))
    );
    assert_eq!(ok["kind"], "postgres");
    assert_eq!(ok["address"], "127.0.0.1:5432");
    let refused = by_name("pg-closed");
    assert_eq!(refused["status"], "down");
    assert!(refused["last_error"].as_str().unwrap().contains(&format!("127.0.0.1:{closed}")), "{refused}");
    let badauth = by_name("pg-badauth");
    let why = badauth["last_error"].as_str().unwrap();
    assert!(why.starts_with("authentication failed") && why.contains("tz_no_such_role"), "unclear reason: {why}");
    let names =
        |v: Vec<serde_json::Value>| v.iter().map(|x| x["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(names(search("east his")), vec!["his-pg"]);
    assert_eq!(names(search("LIS")), vec!["pg-closed"]);
    assert_eq!(names(search(&format!("127.0.0.1:{closed}"))), vec!["pg-closed"]);
    assert!(search("no-such-thing-anywhere").is_empty());

    // No retry storm: the refused login backs off (attempts after 1, 3, 7 … skipped ticks),
    // so a dozen 1-second ticks see far fewer attempts than ticks. Counted, not timed.
    let attempts = |logs: &str| {
        logs.lines().filter(|l| l.contains("target collection failed") && l.contains("pg-badauth")).count()
    };
    let before = attempts(&agent.proc_mut().logs());
    let page = agent.scrape();
    let ticks_before = sample(&page, "pg_up", "his-pg", &[]).map(|_| ());
    assert!(ticks_before.is_some());
    std::thread::sleep(Duration::from_secs(12));
    let during = attempts(&agent.proc_mut().logs()) - before;
    assert!(during <= 4, "{during} login attempts in 12 one-second ticks: no backoff");
    // …while the healthy target kept flowing and the agent did not crash.
    agent.proc_mut().assert_running();
    assert_eq!(sample(&agent.scrape(), "pg_up", "his-pg", &[]), Some(1.0));
    let logs = agent.proc_mut().logs();
    assert!(logs.contains("authentication failed"), "the log names the reason");
}

#[test]
fn mariadb_and_redis_targets_with_closed_ports_and_wrong_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let pass = secret_file(dir.path(), "wrong.pass", "definitely-wrong");
    let (closed_my, closed_redis) = (ports::free_port(), ports::free_port());
    let toml = format!(
        r#"
[[targets]]
name = "lis-mysql"
type = "mysql"
address = "127.0.0.1:3306"
database = "test"
system = "LIS"
interval = "1s"

[[targets]]
name = "mysql-closed"
type = "mysql"
address = "127.0.0.1:{closed_my}"
interval = "1s"

[[targets]]
name = "mysql-badauth"
type = "mysql"
address = "127.0.0.1:3306"
username = "tz_no_such_user"
password = {{ file = "{pass}" }}
interval = "1s"

[[targets]]
name = "his-redis"
type = "redis"
address = "127.0.0.1:6379"
system = "HIS"
interval = "1s"

[[targets]]
name = "redis-closed"
type = "redis"
address = "127.0.0.1:{closed_redis}"
interval = "1s"

[[targets]]
name = "redis-badauth"
type = "redis"
address = "127.0.0.1:6379"
password = {{ file = "{pass}" }}
interval = "1s"
"#
    );
    let mut agent =
        Agent::start(AgentOpts { interval: Some("1s".into()), config_toml: Some(toml), ..Default::default() });
    let page = wait::until_60s("mysql and redis targets on /metrics", |last| {
        let p = agent.scrape();
        let got = [
            sample(&p, "mysql_up", "lis-mysql", &[]),
            sample(&p, "mysql_up", "mysql-closed", &[]),
            sample(&p, "mysql_up", "mysql-badauth", &[]),
            sample(&p, "redis_up", "his-redis", &[]),
            sample(&p, "redis_up", "redis-closed", &[]),
            sample(&p, "redis_up", "redis-badauth", &[]),
        ];
        *last = format!("{got:?}");
        (got == [Some(1.0), Some(0.0), Some(0.0), Some(1.0), Some(0.0), Some(0.0)]).then_some(p)
    });
    // Plausible MariaDB figures.
    let max_conn = sample(&page, "mysql_global_variables_max_connections", "lis-mysql", &[]).unwrap();
    let connected = sample(&page, "mysql_global_status_threads_connected", "lis-mysql", &[]).unwrap();
    assert!(connected >= 1.0 && connected <= max_conn, "threads_connected {connected} of {max_conn}");
    assert!(sample(&page, "mysql_global_status_uptime", "lis-mysql", &[]).unwrap() > 0.0);
    assert!(sample(&page, "mysql_global_status_queries", "lis-mysql", &[]).unwrap() >= 1.0);
    assert!(sample(&page, "mysql_global_variables_innodb_buffer_pool_size", "lis-mysql", &[]).unwrap() > 0.0);
    let pages = sample(&page, "mysql_global_status_buffer_pool_pages_total", "lis-mysql", &[]).unwrap();
    assert!(pages > 0.0, "buffer pool pages {pages}");
    assert!(page.contains("mysql_version_info{") && page.contains("MariaDB"));
    // Plausible Redis figures.
    assert!(sample(&page, "redis_memory_used_bytes", "his-redis", &[]).unwrap() > 100_000.0);
    assert!(sample(&page, "redis_connected_clients", "his-redis", &[]).unwrap() >= 1.0);
    assert!(sample(&page, "redis_commands_processed_total", "his-redis", &[]).unwrap() >= 1.0);
    assert!(sample(&page, "redis_uptime_in_seconds", "his-redis", &[]).unwrap() > 0.0);
    assert!(page.contains("redis_instance_info{") && page.contains("redis_version="));

    // The healthy ones keep flowing: their counters move between scrapes while three
    // neighbours fail every tick.
    let q0 = sample(&page, "mysql_global_status_queries", "lis-mysql", &[]).unwrap();
    let c0 = sample(&page, "redis_commands_processed_total", "his-redis", &[]).unwrap();
    wait::until_60s("healthy targets collected again", |last| {
        let p = agent.scrape();
        let q = sample(&p, "mysql_global_status_queries", "lis-mysql", &[])?;
        let c = sample(&p, "redis_commands_processed_total", "his-redis", &[])?;
        *last = format!("queries {q0} → {q}, redis commands {c0} → {c}");
        (q > q0 && c > c0).then_some(())
    });

    agent.proc_mut().assert_running();
    let logs = agent.proc_mut().logs();
    let reason = |name: &str| {
        logs.lines()
            .find(|l| l.contains("target collection failed") && l.contains(&format!("target_name={name}")))
            .unwrap_or_else(|| panic!("no failure log line for {name}:\n{logs}"))
            .to_string()
    };
    let my = reason("mysql-badauth");
    assert!(my.contains("authentication failed") && my.contains("Access denied"), "{my}");
    let rd = reason("redis-badauth");
    assert!(rd.contains("authentication failed"), "{rd}");
    let closed = reason("redis-closed");
    assert!(closed.contains("cannot connect") && closed.contains(&closed_redis.to_string()), "{closed}");
    assert!(!logs.contains("definitely-wrong"), "a password reached the log");
}

/// Our own NATS server with JetStream and its monitoring port (`nats-server -m`).
fn start_nats(dir: &std::path::Path, port: u16, monitor: u16) -> tingzhen_tests::process::Proc {
    let mut cmd = Command::new("nats-server");
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-m", &monitor.to_string(), "-js", "-sd"])
        .arg(dir.join("js"));
    let mut p = tingzhen_tests::process::Proc::spawn("nats-server", cmd, &dir.join("logs"));
    let url = format!("http://127.0.0.1:{monitor}/varz");
    wait::until_60s("nats-server monitoring endpoint", |last| {
        p.assert_running();
        let r = tingzhen_tests::Http::new().get(&url, None, &[]);
        *last = format!("{r:?}");
        r.ok().filter(|r| r.status == 200).map(|_| ())
    });
    p
}

#[test]
fn nats_http_tcp_and_process_targets() {
    let dir = tempfile::tempdir().unwrap();
    let (nats_port, monitor) = (ports::free_port(), ports::free_port());
    let mut nats = start_nats(dir.path(), nats_port, monitor);
    let coll = Collector::start_default();
    let closed = ports::free_port();
    let base = coll.base_url();
    let toml = format!(
        r#"
[[targets]]
name = "bus"
type = "nats"
address = "127.0.0.1:{monitor}"
system = "ESB"
interval = "1s"

[[targets]]
name = "nats-closed"
type = "nats"
address = "http://127.0.0.1:{closed}"
interval = "1s"

[[targets]]
name = "portal"
type = "http"
address = "{base}/healthz"
keyword = "ok"
interval = "1s"

[[targets]]
name = "portal-missing"
type = "http"
address = "{base}/no-such-page"
interval = "1s"

[[targets]]
name = "cache-port"
type = "tcp"
address = "127.0.0.1:6379"
interval = "1s"

[[targets]]
name = "closed-port"
type = "tcp"
address = "127.0.0.1:{closed}"
interval = "1s"

[[targets]]
name = "nats-proc"
type = "process"
address = "nats-server"
interval = "1s"

[[targets]]
name = "ghost-proc"
type = "process"
address = "tz-no-such-process"
interval = "1s"
"#
    );
    let mut agent =
        Agent::start(AgentOpts { interval: Some("1s".into()), config_toml: Some(toml), ..Default::default() });
    let want = [
        ("nats_up", "bus", 1.0),
        ("nats_up", "nats-closed", 0.0),
        ("probe_success", "portal", 1.0),
        ("probe_success", "portal-missing", 0.0),
        ("probe_success", "cache-port", 1.0),
        ("probe_success", "closed-port", 0.0),
        ("namedprocess_up", "nats-proc", 1.0),
        ("namedprocess_up", "ghost-proc", 0.0),
    ];
    let page = wait::until_60s("nats, probe and process targets on /metrics", |last| {
        let p = agent.scrape();
        let got: Vec<Option<f64>> = want.iter().map(|(m, t, _)| sample(&p, m, t, &[])).collect();
        *last = format!("{got:?}");
        want.iter().zip(&got).all(|((_, _, v), g)| *g == Some(*v)).then_some(p)
    });
    // NATS: our server, its JetStream and our agent's view of it.
    assert!(page.contains("gnatsd_varz_info{") && page.contains("server_id="));
    assert!(sample(&page, "gnatsd_varz_mem", "bus", &[]).unwrap() > 1_000_000.0);
    assert!(sample(&page, "gnatsd_varz_start_time_seconds", "bus", &[]).unwrap() > 1.0e9);
    assert!(sample(&page, "jetstream_server_max_storage", "bus", &[]).unwrap() > 0.0, "JetStream is on");
    // HTTP probe: status and keyword; the missing page keeps its status code as the reason.
    assert_eq!(sample(&page, "probe_http_status_code", "portal", &[]), Some(200.0));
    assert_eq!(sample(&page, "probe_failed_due_to_regex", "portal", &[]), Some(0.0));
    assert_eq!(sample(&page, "probe_http_status_code", "portal-missing", &[]), Some(404.0));
    assert!(sample(&page, "probe_duration_seconds", "cache-port", &[]).is_some());
    // Process: our nats-server (and the machine's own, if it runs one) with memory and a start.
    assert!(sample(&page, "namedprocess_namegroup_num_procs", "nats-proc", &[]).unwrap() >= 1.0);
    assert!(sample(&page, "namedprocess_namegroup_memory_bytes", "nats-proc", &[]).unwrap() > 1_000_000.0);
    assert!(sample(&page, "namedprocess_namegroup_oldest_start_time_seconds", "nats-proc", &[]).unwrap() > 1.0e9);
    assert_eq!(sample(&page, "namedprocess_namegroup_num_procs", "ghost-proc", &[]), Some(0.0));

    // Restart NATS: the process target counts the restart and NATS comes back up.
    nats.kill9();
    drop(nats);
    let _nats = start_nats(dir.path(), nats_port, monitor);
    wait::until_60s("the nats-server restart counted and nats_up back to 1", |last| {
        let p = agent.scrape();
        let r = sample(&p, "namedprocess_namegroup_restarts_total", "nats-proc", &[]);
        let up = sample(&p, "nats_up", "bus", &[]);
        *last = format!("restarts {r:?}, nats_up {up:?}");
        (r.is_some_and(|r| r >= 1.0) && up == Some(1.0)).then_some(())
    });
    let logs = agent.proc_mut().logs();
    assert!(
        logs.lines().any(|l| l.contains("ghost-proc") && l.contains("no process named \"tz-no-such-process\"")),
        "the reason is logged:\n{logs}"
    );
    assert!(logs.lines().any(|l| l.contains("portal-missing") && l.contains("HTTP status 404")), "{logs}");
}

/// Enables RabbitMQ's management plugin on the local broker (idempotent; it stays enabled).
fn ensure_rabbitmq_management() {
    let ok = |_: &mut String| {
        tingzhen_tests::Http::new()
            .get("http://127.0.0.1:15672/api/overview", None, &[])
            .ok()
            .filter(|r| r.status == 401 || r.status == 200)
            .map(|_| ())
    };
    if ok(&mut String::new()).is_some() {
        return;
    }
    let st = Command::new("rabbitmq-plugins")
        .args(["enable", "rabbitmq_management"])
        .status()
        .expect("run rabbitmq-plugins (RabbitMQ must be installed)");
    assert!(st.success(), "rabbitmq-plugins enable rabbitmq_management failed");
    wait::until_60s("the RabbitMQ management API", ok);
}

/// Calls the management API as guest.
fn rabbit_api(method: &str, path: &str, body: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("http://127.0.0.1:15672{path}");
    let auth = "Basic Z3Vlc3Q6Z3Vlc3Q=";
    let r = match method {
        "PUT" => agent.put(&url).header("Authorization", auth).content_type("application/json").send(body),
        "POST" => agent.post(&url).header("Authorization", auth).content_type("application/json").send(body),
        _ => agent.delete(&url).header("Authorization", auth).call(),
    };
    r.map(|r| r.status().as_u16()).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

#[test]
fn rabbitmq_and_mqtt_targets() {
    ensure_rabbitmq_management();
    let queue = format!("tz-agent-test-{}", std::process::id());
    assert!(matches!(rabbit_api("PUT", &format!("/api/queues/%2F/{queue}"), r#"{"durable":false}"#), 201 | 204));
    for _ in 0..3 {
        let body =
            format!(r#"{{"properties":{{}},"routing_key":"{queue}","payload":"hello","payload_encoding":"string"}}"#);
        assert_eq!(rabbit_api("POST", "/api/exchanges/%2F/amq.default/publish", &body), 200);
    }
    let dir = tempfile::tempdir().unwrap();
    let guest = secret_file(dir.path(), "guest.pass", "guest");
    let wrong = secret_file(dir.path(), "wrong.pass", "definitely-wrong");
    let closed = ports::free_port();
    let toml = format!(
        r#"
[[targets]]
name = "his-mq"
type = "rabbitmq"
address = "127.0.0.1:5672"
username = "guest"
password = {{ file = "{guest}" }}
management_url = "http://127.0.0.1:15672"
system = "HIS"
interval = "2s"

[[targets]]
name = "mq-badauth"
type = "rabbitmq"
address = "127.0.0.1:5672"
username = "guest"
password = {{ file = "{wrong}" }}
interval = "1s"

[[targets]]
name = "mq-closed"
type = "rabbitmq"
address = "127.0.0.1:{closed}"
interval = "1s"

[[targets]]
name = "iot-mqtt"
type = "mqtt"
address = "127.0.0.1:1883"
interval = "2s"

[[targets]]
name = "mqtt-closed"
type = "mqtt"
address = "127.0.0.1:{closed}"
interval = "1s"
"#
    );
    let mut agent =
        Agent::start(AgentOpts { interval: Some("1s".into()), config_toml: Some(toml), ..Default::default() });
    let want = [
        ("rabbitmq_up", "his-mq", 1.0),
        ("rabbitmq_up", "mq-badauth", 0.0),
        ("rabbitmq_up", "mq-closed", 0.0),
        ("mqtt_up", "iot-mqtt", 1.0),
        ("mqtt_up", "mqtt-closed", 0.0),
    ];
    // Mosquitto publishes most of $SYS every sys_interval (10 s by default): wait for it.
    let page = wait::until_60s("rabbitmq and mqtt targets, with the queue and $SYS counts", |last| {
        let p = agent.scrape();
        let got: Vec<Option<f64>> = want.iter().map(|(m, t, _)| sample(&p, m, t, &[])).collect();
        let depth = sample(&p, "rabbitmq_queue_messages", "his-mq", &[("queue", queue.as_str())]);
        let clients = sample(&p, "broker_clients_connected", "iot-mqtt", &[]);
        *last = format!("{got:?} depth {depth:?} mqtt clients {clients:?}");
        let ups = want.iter().zip(&got).all(|((_, _, v), g)| *g == Some(*v));
        (ups && depth == Some(3.0) && clients.is_some()).then_some(p)
    });
    assert!(page.contains("rabbitmq_build_info{") && page.contains("product=\"RabbitMQ\""));
    assert!(sample(&page, "rabbitmq_queues", "his-mq", &[]).unwrap() >= 1.0);
    assert!(sample(&page, "rabbitmq_exchanges", "his-mq", &[]).unwrap() >= 1.0);
    assert_eq!(sample(&page, "rabbitmq_queue_consumers", "his-mq", &[("queue", queue.as_str())]), Some(0.0));
    assert_eq!(sample(&page, "rabbitmq_management_up", "his-mq", &[]), Some(1.0));
    assert!(sample(&page, "broker_clients_connected", "iot-mqtt", &[]).unwrap() >= 1.0, "we are a client");
    assert!(sample(&page, "broker_uptime", "iot-mqtt", &[]).unwrap() > 0.0);
    assert!(page.contains("broker_version_info{") && page.contains("mosquitto"));
    assert_eq!(rabbit_api("DELETE", &format!("/api/queues/%2F/{queue}"), ""), 204);

    let logs = agent.proc_mut().logs();
    let line = logs
        .lines()
        .find(|l| l.contains("target collection failed") && l.contains("target_name=mq-badauth"))
        .unwrap_or_else(|| panic!("no failure line for mq-badauth:\n{logs}"));
    assert!(line.contains("authentication failed") && line.contains("ACCESS_REFUSED"), "{line}");
    assert!(!logs.contains("definitely-wrong"), "a password reached the log");
}

/// Our own MariaDB with performance_schema on (the machine's ships it off, and it cannot be
/// switched on without a restart), in a temp data dir on a free port.
fn start_mariadb(dir: &std::path::Path, port: u16) -> tingzhen_tests::process::Proc {
    let data = dir.join("mariadb");
    let out = Command::new("mariadb-install-db")
        .args(["--no-defaults", "--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"])
        .arg(format!("--datadir={}", data.display()))
        .output()
        .expect("run mariadb-install-db (MariaDB server must be installed)");
    assert!(out.status.success(), "mariadb-install-db failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut cmd = Command::new("mariadbd");
    cmd.args(["--no-defaults", "--user=root", "--bind-address=127.0.0.1", "--performance-schema=ON", "--skip-log-bin"])
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--port={port}"))
        .arg(format!("--socket={}", dir.join("mariadb.sock").display()))
        .arg(format!("--pid-file={}", dir.join("mariadb.pid").display()));
    let mut p = tingzhen_tests::process::Proc::spawn("mariadbd", cmd, &dir.join("logs"));
    wait::until_60s("our MariaDB accepting connections", |last| {
        p.assert_running();
        let out = mysql(port, "SELECT 1").ok()?;
        *last = out.clone();
        (out.trim() == "1").then_some(())
    });
    p
}

fn mysql(port: u16, sql: &str) -> Result<String, String> {
    let out = Command::new("mysql")
        .args(["-h", "127.0.0.1", "-P", &port.to_string(), "-u", "root", "-N", "-B", "-e", sql])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn mysql_top_sql_from_performance_schema_digests() {
    let dir = tempfile::tempdir().unwrap();
    let port = ports::free_port();
    let _db = start_mariadb(dir.path(), port);
    let coll = Collector::start_default();
    let token = coll.create_token("mysql-agent", "ingest,query", None);
    let toml = format!(
        r#"
[[targets]]
name = "lis-mysql-ps"
type = "mysql"
address = "127.0.0.1:{port}"
system = "LIS"
interval = "2s"
top_sql = 5
"#
    );
    let agent = Agent::start(AgentOpts {
        collector: Some(coll.base_url()),
        token: Some(token.clone()),
        interval: Some("1s".into()),
        config_toml: Some(toml),
        ..Default::default()
    });
    wait::until_60s("mysql_up 1 with performance_schema on", |last| {
        let p = agent.scrape();
        let got = (
            sample(&p, "mysql_up", "lis-mysql-ps", &[]),
            sample(&p, "mysql_global_variables_performance_schema", "lis-mysql-ps", &[]),
        );
        *last = format!("{got:?}");
        (got == (Some(1.0), Some(1.0))).then_some(())
    });
    let host = hostname();
    let entry = wait::until_60s("SLEEP in top SQL from performance_schema digests", |last| {
        mysql(port, "SELECT SLEEP(1.2), 'tz_marker_literal'").expect("slow query");
        let r = coll
            .http()
            .get(&coll.url("/api/v1/db/top-sql"), Some(&token), &[("host", host.as_str()), ("target", "lis-mysql-ps")])
            .ok()?;
        *last = format!("{} {}", r.status, &r.body[..r.body.len().min(400)]);
        r.json()["data"].as_array()?.iter().find_map(|snap| {
            snap["statements"]
                .as_array()?
                .iter()
                .find(|s| s["query"].as_str().unwrap_or("").to_uppercase().contains("SLEEP"))
                .cloned()
        })
    });
    assert!(entry["total_time_ms"].as_f64().unwrap() >= 1000.0, "{entry}");
    assert!(entry["calls"].as_u64().unwrap() >= 1, "{entry}");
    assert!(!entry["query"].as_str().unwrap().contains("tz_marker_literal"), "digests normalise literals: {entry}");
    assert!(entry["query_id"].as_str().unwrap().bytes().all(|b| b.is_ascii_hexdigit()), "{entry}");
}
