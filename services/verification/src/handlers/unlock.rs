//! Account unlock in a verified reset flow (policy `allow_unlock`, Entra's "unlock without
//! reset"): VerifyCode says whether it is available once every required method is verified,
//! and UnlockAccount asks the directory to clear the lock (`account.unlocked`, reason
//! "self_service", with the flow id) and ends the flow as CompleteReset does.
//!
//! Invariant: the directory is asked to unlock only for a real session with every required
//! method verified, a locked account and a policy allowing it; a decoy session can never get
//! there (its codes never match), so the refusal does not tell the two apart.

use sspr_proto::internal::directory::v1 as dir;
use sspr_proto::internal::verification::v1::{UnlockAccountRequest, UnlockAccountResponse};
use tracing::field::Empty;

use super::Verification;
use crate::Error;
use crate::domain::ResetSession;

/// Why unlocking is not possible in a flow whose methods are all verified.
const NOT_LOCKED: &str = "the account is not locked";
const NOT_ALLOWED: &str = "the policy does not allow unlocking the account";

impl Verification {
    /// Whether the (fully verified) session's account is locked and the policy lets the user
    /// unlock it. Asked after a code was accepted, so a peer failure answers false (the user
    /// can still reset) instead of failing a verification that already counted.
    pub(super) async fn unlock_available(&self, session: &ResetSession) -> bool {
        if session.decoy || session.methods_remaining() > 0 {
            return false;
        }
        match self.unlock_refusal(session).await {
            Ok(refusal) => refusal.is_none(),
            Err(e) => {
                tracing::warn!(error = %e, "could not tell whether unlock is available");
                false
            }
        }
    }

    /// `None` when the account of `session` is locked and the policy allows unlocking it,
    /// otherwise why not.
    async fn unlock_refusal(&self, session: &ResetSession) -> Result<Option<&'static str>, Error> {
        let user = self.peers.get_user(session.user_id.as_str()).await?;
        if !user.is_some_and(|u| u.locked) {
            return Ok(Some(NOT_LOCKED));
        }
        let policy = self.peers.get_policy().await?;
        if !policy.policy.is_some_and(|p| p.allow_unlock) {
            return Ok(Some(NOT_ALLOWED));
        }
        Ok(None)
    }

    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty))]
    pub(super) async fn unlock_account(
        &self,
        req: UnlockAccountRequest,
    ) -> Result<UnlockAccountResponse, Error> {
        let (token_hash, session) = self.usable_session(&req.session_id).await?;
        session.ensure_complete()?;
        if session.decoy {
            // Unreachable in practice (a decoy never verifies a method); refused like an
            // account that is not locked.
            return Err(Error::Unavailable(NOT_LOCKED));
        }
        if let Some(refusal) = self.unlock_refusal(&session).await? {
            tracing::info!(refusal, "unlock refused");
            return Err(Error::Unavailable(refusal));
        }
        let unlocked = self
            .peers
            .unlock(&dir::UnlockRequest {
                user_id: session.user_id.as_str().to_owned(),
                flow_id: session.flow_id.as_str().to_owned(),
                reason: "self_service".to_owned(),
                actor: String::new(),
            })
            .await?;
        if !unlocked.was_locked {
            // Unlocked by someone else meanwhile: nothing left to do, and the flow stays open
            // for a password reset.
            return Err(Error::Unavailable(NOT_LOCKED));
        }
        let now = self.clock.now();
        if !self
            .store
            .complete_session(&token_hash, Vec::new(), now)
            .await?
        {
            // Ended by a concurrent call in the meantime.
            return Err(Error::UnknownSession);
        }
        tracing::info!("account unlocked by the user");
        self.clear_after_reset(&session).await;
        Ok(UnlockAccountResponse {})
    }
}
