//! The mail and SMS "transports" of `sspr dev`: each mail is written as an RFC 5322 `.eml` file
//! (`<delivery id>.eml`), each SMS as a text file (`<delivery id>.sms.txt`), into a directory
//! where a developer can open them.
//!
//! Never used by the `sspr-notification` binary (it requires an SMTP server and sends SMS only
//! to a provider). A file appears complete or not at all: it is written under a temporary name
//! and renamed.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use lettre::message::Mailbox;

use crate::adapters::mail::build_message;
use crate::domain::retry::SendFailure;
use crate::ports::{Mailer, OutgoingMail, OutgoingSms, SmsSender};

pub struct FileMailer {
    dir: PathBuf,
    from: Mailbox,
}

impl FileMailer {
    pub fn new(dir: PathBuf, from: Mailbox) -> Self {
        Self { dir, from }
    }
}

#[async_trait]
impl Mailer for FileMailer {
    #[tracing::instrument(
        name = "mail.write_file",
        skip_all,
        fields(otel.kind = "client", delivery_id = %mail.delivery_id),
        err(Display)
    )]
    async fn send(&self, mail: &OutgoingMail) -> Result<(), SendFailure> {
        let message = build_message(&self.from, mail)?;
        // The delivery id is [A-Za-z0-9._-]+ by construction, so it is a safe file name.
        let name = format!("{}.eml", mail.delivery_id);
        write_atomically(&self.dir, &name, &message.formatted()).await?;
        tracing::info!(file = %name, "mail written to the mail directory");
        Ok(())
    }

    fn provider(&self) -> &'static str {
        "files"
    }
}

/// Writes each SMS as `<delivery id>.sms.txt` and each voice call as `<delivery id>.voice.txt`
/// (`To:` line, blank line, body: the words the call would read out).
pub struct FileSms {
    dir: PathBuf,
}

impl FileSms {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

#[async_trait]
impl SmsSender for FileSms {
    #[tracing::instrument(
        name = "sms.write_file",
        skip_all,
        fields(otel.kind = "client", delivery_id = %sms.delivery_id),
        err(Display)
    )]
    async fn send(&self, sms: &OutgoingSms) -> Result<(), SendFailure> {
        let name = format!("{}.{}.txt", sms.delivery_id, sms.channel.as_str());
        let text = format!("To: {}\n\n{}\n", sms.to.expose(), sms.body);
        write_atomically(&self.dir, &name, text.as_bytes()).await?;
        tracing::info!(file = %name, channel = sms.channel.as_str(), "SMS or voice call written to the SMS directory");
        Ok(())
    }

    fn provider(&self) -> &'static str {
        "files"
    }
}

async fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> Result<(), SendFailure> {
    let io = |what: &str, e: std::io::Error| {
        SendFailure::transient(format!("cannot {what} in {}: {}", dir.display(), e.kind()))
    };
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| io("create the directory", e))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, contents)
        .await
        .map_err(|e| io("write a file", e))?;
    tokio::fs::rename(&tmp, dir.join(name))
        .await
        .map_err(|e| io("rename a file", e))
}
