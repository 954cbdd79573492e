//! The outside world behind the ports: lettre (SMTP, and `.eml` files for `sspr dev`), the SMS
//! webhook and Twilio for SMS and voice calls (reqwest), the policy's helpdesk contact (NATS),
//! and sea-orm (delivery records, provider messages and receipts, outbox, migrations).

pub mod accounts;
pub mod db;
pub mod helpdesk;
pub mod http_client;
pub mod mail;
pub mod mail_files;
pub mod migration;
pub mod receipts_db;
pub mod sms_webhook;
pub mod smtp;
pub mod template_dir;
pub mod twilio;
