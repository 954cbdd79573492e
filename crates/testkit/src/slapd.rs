//! A private OpenLDAP `slapd` for one test, with StartTLS and a password-writeback service
//! account.
//!
//! Layout of the directory (suffix `dc=example,dc=org`, one mdb database in a temp dir):
//! - `cn=admin,dc=example,dc=org`: the rootdn (directory admin), password [`Slapd::ADMIN_PASSWORD`];
//! - `cn=sspr-writeback,dc=example,dc=org`: the service account, password
//!   [`Slapd::SERVICE_PASSWORD`]; its ACL lets it WRITE `userPassword` and nothing else (it
//!   cannot even read the entries, let alone change another attribute);
//! - `uid=alice,ou=people,dc=example,dc=org`: a user (inetOrgPerson) with the password
//!   [`Slapd::ALICE_PASSWORD`]; users can bind (anonymous `auth` on `userPassword`).
//!
//! TLS: a throw-away CA and a server certificate for `IP:127.0.0.1` / `DNS:localhost` are
//! generated with the `openssl` CLI at start; [`Slapd::ca_file`] is the CA to trust.
//!
//! Invariants: slapd listens only on `ldap://127.0.0.1:<random port>/`, with its own config,
//! database and certificates in a temp dir owned by the fixture (never the system slapd or
//! `/etc/ldap/slapd.d`); `start` returns once slapd accepts connections; the process is killed
//! on drop, and also when the test process dies (same `sh` lifeline supervisor as
//! [`crate::NatsServer`]).
//!
//! Tests that need slapd call [`Slapd::start_or_skip`]: when slapd is not installed they are
//! skipped with "slapd not installed: skipped", unless `SSPR_REQUIRE_LDAP_TESTS` is set (CI),
//! in which case a missing slapd is an error.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;
use tokio::process::{Child, ChildStdin, Command};

use crate::nats::SUPERVISOR;
use crate::support::free_port;

/// Where Debian's `slapd` package installs the server.
pub const SLAPD_BIN: &str = "/usr/sbin/slapd";
/// When set (to anything non-empty), LDAP tests fail instead of skipping if slapd is missing.
pub const REQUIRE_LDAP_TESTS_ENV: &str = "SSPR_REQUIRE_LDAP_TESTS";

const NOT_FOUND: &str =
    "slapd not found at /usr/sbin/slapd: apt-get install slapd ldap-utils (and openssl)";
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 5;
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// A running private slapd; killed on drop.
#[derive(Debug)]
pub struct Slapd {
    port: u16,
    /// Config, database (`db/`), certificates and the server's log (`slapd.log`).
    dir: TempDir,
    child: Option<Child>,
    lifeline: Option<ChildStdin>,
}

impl Slapd {
    /// The suffix of the only database.
    pub const BASE_DN: &'static str = "dc=example,dc=org";
    /// The rootdn (directory admin).
    pub const ADMIN_DN: &'static str = "cn=admin,dc=example,dc=org";
    pub const ADMIN_PASSWORD: &'static str = "admin-secret-0";
    /// The writeback service account: may write `userPassword` only.
    pub const SERVICE_DN: &'static str = "cn=sspr-writeback,dc=example,dc=org";
    pub const SERVICE_PASSWORD: &'static str = "writeback-secret-0";
    /// Template for user DNs, with `{user}` for the (escaped) user id.
    pub const USER_DN_TEMPLATE: &'static str = "uid={user},ou=people,dc=example,dc=org";
    pub const ALICE_DN: &'static str = "uid=alice,ou=people,dc=example,dc=org";
    pub const ALICE_PASSWORD: &'static str = "Alice-initial-Pw-1";

    /// Whether slapd is installed (the fixture can run).
    pub fn installed() -> bool {
        Path::new(SLAPD_BIN).is_file()
    }

    /// Whether a missing slapd must fail the LDAP tests (`SSPR_REQUIRE_LDAP_TESTS` set).
    pub fn required() -> bool {
        std::env::var_os(REQUIRE_LDAP_TESTS_ENV).is_some_and(|v| !v.is_empty())
    }

    /// Starts slapd, or returns `None` after printing "slapd not installed: skipped" when it
    /// is not installed and [`REQUIRE_LDAP_TESTS_ENV`] is not set.
    pub async fn start_or_skip() -> anyhow::Result<Option<Slapd>> {
        if !Self::installed() && !Self::required() {
            eprintln!("slapd not installed: skipped");
            return Ok(None);
        }
        Self::start().await.map(Some)
    }

    /// Generates the certificates and the config, loads the entries with `slapadd`, starts
    /// slapd on a free port of 127.0.0.1 and waits until it accepts connections.
    pub async fn start() -> anyhow::Result<Slapd> {
        if !Self::installed() {
            bail!(NOT_FOUND);
        }
        let dir = tempfile::Builder::new()
            .prefix("sspr-slapd-")
            .tempdir()
            .context("creating the slapd temp dir")?;
        std::fs::create_dir(dir.path().join("db")).context("creating the slapd db dir")?;
        generate_certificates(dir.path()).await?;
        let conf = dir.path().join("slapd.conf");
        std::fs::write(&conf, slapd_conf(dir.path())).context("writing slapd.conf")?;
        let ldif = dir.path().join("init.ldif");
        std::fs::write(&ldif, initial_entries().await?).context("writing init.ldif")?;
        run_tool(
            Command::new("slapadd")
                .arg("-q")
                .arg("-f")
                .arg(&conf)
                .arg("-l")
                .arg(&ldif),
            "slapadd",
        )
        .await?;

        let mut server = Slapd {
            port: 0,
            dir,
            child: None,
            lifeline: None,
        };
        for _ in 0..START_ATTEMPTS {
            server.port = free_port().context("picking a free port for slapd")?;
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(SpawnError::PortTaken) => continue,
                Err(SpawnError::Other(e)) => return Err(e),
            }
        }
        bail!("slapd could not bind a free port in {START_ATTEMPTS} attempts")
    }

    /// `ldap://127.0.0.1:<port>` (StartTLS available).
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM file of the CA that signed the server certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Kills slapd (like a crash) and waits for it to exit; the data directory is kept.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        drop(self.lifeline.take());
        if let Some(mut child) = self.child.take() {
            match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
                Ok(status) => {
                    status.context("waiting for slapd to exit")?;
                }
                Err(_) => {
                    let _ = child.start_kill();
                    bail!("slapd did not exit within {STOP_TIMEOUT:?} of being stopped");
                }
            }
        }
        Ok(())
    }

    /// A fresh connection with StartTLS (certificate checked against [`Slapd::ca_file`]) and a
    /// simple bind as `dn`: `Ok(true)` if the bind succeeds, `Ok(false)` on invalid
    /// credentials (LDAP result 49), an error otherwise. Uses the `ldapwhoami` CLI.
    pub async fn bind_works(&self, dn: &str, password: &str) -> anyhow::Result<bool> {
        let output = self
            .ldap_cli("ldapwhoami")
            .args(["-D", dn, "-w", password])
            .output();
        let output = tokio::time::timeout(TOOL_TIMEOUT, output)
            .await
            .context("ldapwhoami timed out")?
            .context("running ldapwhoami (apt-get install ldap-utils)")?;
        match output.status.code() {
            Some(0) => Ok(true),
            Some(49) => Ok(false),
            _ => bail!(
                "ldapwhoami failed with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }
    }

    /// An LDAP CLI (`ldapwhoami`, `ldapsearch`, ...) preset with `-x -ZZ -H <url>` and the CA.
    pub fn ldap_cli(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("LDAPTLS_CACERT", self.ca_file())
            .env("LDAPTLS_REQCERT", "demand")
            .args(["-x", "-ZZ", "-H"])
            .arg(self.url())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("slapd.log")
    }

    async fn spawn_and_wait(&mut self) -> Result<(), SpawnError> {
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("sspr-testkit-slapd")
            .arg(SLAPD_BIN)
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .arg("-h")
            .arg(format!("{}/", self.url()))
            // Stay in the foreground (no fork), log only what slapd itself thinks matters.
            .args(["-d", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("spawning slapd under sh")?;
        self.lifeline = child.stdin.take();
        self.child = Some(child);
        match self.wait_ready().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = self.stop().await;
                let output = std::fs::read(&log_path)
                    .map(|b| {
                        let start = usize::try_from(log_offset).unwrap_or(0).min(b.len());
                        String::from_utf8_lossy(&b[start..]).into_owned()
                    })
                    .unwrap_or_default();
                if output.contains("Address already in use") {
                    Err(SpawnError::PortTaken)
                } else {
                    Err(SpawnError::Other(e.context(format!(
                        "slapd on port {} did not become ready; its output:\n{}",
                        self.port,
                        output.trim_end()
                    ))))
                }
            }
        }
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().context("polling slapd")?
            {
                bail!("slapd exited during start-up with {status}");
            }
            // slapd opens its listener only after the database and TLS are set up.
            match tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(
                        anyhow::Error::new(e).context(format!("timed out after {READY_TIMEOUT:?}"))
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        // The supervisor SIGKILLs slapd on end of file; wait briefly so the temp dir is not
        // removed while slapd still has its database open.
        drop(self.lifeline.take());
        if let Some(child) = self.child.as_mut() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

enum SpawnError {
    PortTaken,
    Other(anyhow::Error),
}

impl From<anyhow::Error> for SpawnError {
    fn from(e: anyhow::Error) -> Self {
        SpawnError::Other(e)
    }
}

/// Runs a helper tool to completion; its stderr is in the error if it fails.
pub(crate) async fn run_tool(cmd: &mut Command, name: &str) -> anyhow::Result<Vec<u8>> {
    let output = cmd.stdin(Stdio::null()).kill_on_drop(true).output();
    let output = tokio::time::timeout(TOOL_TIMEOUT, output)
        .await
        .with_context(|| format!("{name} timed out"))?
        .with_context(|| format!("running {name}"))?;
    if !output.status.success() {
        bail!(
            "{name} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}

/// A CA (`ca.pem`) and a server certificate (`server.pem`, `server.key`) for 127.0.0.1.
pub(crate) async fn generate_certificates(dir: &Path) -> anyhow::Result<()> {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    run_tool(
        Command::new("openssl")
            .current_dir(dir)
            .args(["req", "-x509", "-nodes", "-days", "2"])
            .args(ec)
            .args([
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=sspr test CA",
            ])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        "openssl (CA; apt-get install openssl)",
    )
    .await?;
    run_tool(
        Command::new("openssl")
            .current_dir(dir)
            .args(["req", "-new", "-nodes"])
            .args(ec)
            .args(["-keyout", "server.key", "-out", "server.csr"])
            .args(["-subj", "/CN=127.0.0.1"]),
        "openssl (server key)",
    )
    .await?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
         basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n",
    )
    .context("writing server.ext")?;
    run_tool(
        Command::new("openssl")
            .current_dir(dir)
            .args(["x509", "-req", "-in", "server.csr", "-days", "2"])
            .args(["-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"])
            .args(["-extfile", "server.ext", "-out", "server.pem"]),
        "openssl (server certificate)",
    )
    .await?;
    Ok(())
}

/// slapd.conf: schemas, mdb, TLS, and the ACLs described in the module docs.
fn slapd_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
TLSCACertificateFile {d}/ca.pem
TLSCertificateFile {d}/server.pem
TLSCertificateKeyFile {d}/server.key

database mdb
maxsize 16777216
suffix "{base}"
rootdn "{admin}"
rootpw {admin_pw}
directory {d}/db

# The writeback account may write passwords (write only: =w, not even read them); users may
# change their own and bind.
access to attrs=userPassword
  by dn.exact="{service}" =w
  by self =w
  by anonymous auth
  by * none
# Everything else: invisible to the writeback account, readable by bound users.
access to *
  by dn.exact="{service}" none
  by users read
  by * none
"#,
        base = Slapd::BASE_DN,
        admin = Slapd::ADMIN_DN,
        admin_pw = Slapd::ADMIN_PASSWORD,
        service = Slapd::SERVICE_DN,
    )
}

/// The base, `ou=people`, the service account and alice, with `{SSHA}` password hashes.
async fn initial_entries() -> anyhow::Result<String> {
    let service_hash = ssha(Slapd::SERVICE_PASSWORD).await?;
    let alice_hash = ssha(Slapd::ALICE_PASSWORD).await?;
    Ok(format!(
        "dn: {base}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,{base}
objectClass: organizationalUnit
ou: people

dn: {service}
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: sspr-writeback
userPassword: {service_hash}

dn: {alice}
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
sn: Liddell
mail: alice@example.org
userPassword: {alice_hash}
",
        base = Slapd::BASE_DN,
        service = Slapd::SERVICE_DN,
        alice = Slapd::ALICE_DN,
    ))
}

async fn ssha(password: &str) -> anyhow::Result<String> {
    let out = run_tool(
        Command::new("slappasswd").args(["-s", password]),
        "slappasswd",
    )
    .await?;
    Ok(String::from_utf8_lossy(&out).trim().to_owned())
}
