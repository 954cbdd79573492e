//! The mail "transport" of `sspr dev`: each mail is written as an RFC 5322 `.eml` file
//! (`<delivery id>.eml`) into a directory, where a developer can open it.
//!
//! Never used by the `sspr-notification` binary (it requires an SMTP server). A file appears
//! complete or not at all: it is written under a temporary name and renamed.

use std::path::PathBuf;

use async_trait::async_trait;
use lettre::message::Mailbox;

use crate::adapters::mail::build_message;
use crate::domain::retry::SendFailure;
use crate::ports::{Mailer, OutgoingMail};

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
        let io = |what: &str, e: std::io::Error| {
            SendFailure::transient(format!(
                "cannot {what} in the mail directory {}: {}",
                self.dir.display(),
                e.kind()
            ))
        };
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| io("create it", e))?;
        // The delivery id is [A-Za-z0-9._-]+ by construction, so it is a safe file name.
        let name = format!("{}.eml", mail.delivery_id);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        tokio::fs::write(&tmp, message.formatted())
            .await
            .map_err(|e| io("write a file", e))?;
        tokio::fs::rename(&tmp, self.dir.join(&name))
            .await
            .map_err(|e| io("rename a file", e))?;
        tracing::info!(file = %name, "mail written to the mail directory");
        Ok(())
    }
}
