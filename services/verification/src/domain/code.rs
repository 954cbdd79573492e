//! One-time codes: generation, parsing, keyed hashing and the verification state machine.
//!
//! Invariants:
//! - A code is drawn digit by digit from the operating system's CSPRNG with a uniform range
//!   (no modulo bias).
//! - At rest only `HMAC-SHA256(code_key, purpose ‖ user_id ‖ method_id ‖ flow_id ‖ code)` is
//!   kept (each field length-prefixed, so no two bindings share an input). The hash binds the
//!   code to one purpose, user, method and flow: a code from another flow never matches.
//! - Candidates are compared in constant time (`Mac::verify_slice`).
//! - [`judge`] decides the outcome of a verification from the stored state alone: a voided or
//!   used code is no active code, then expiry, then the attempt budget, then the comparison.
//! - [`Code`] never prints its digits through `Debug`.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rand::{Rng, TryRngCore};
use sha2::Sha256;

use super::ids::{FlowId, InputError, MethodId, UserId};

type HmacSha256 = Hmac<Sha256>;

/// Default number of digits.
pub const DEFAULT_CODE_LENGTH: usize = 8;
/// A code expires this long after it was issued.
pub const DEFAULT_CODE_TTL: Duration = Duration::minutes(10);
/// Wrong tries allowed per code.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// The number of digits of a code: 6..=10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeLength(usize);

impl CodeLength {
    pub const MIN: usize = 6;
    pub const MAX: usize = 10;

    pub fn new(digits: usize) -> Option<Self> {
        (Self::MIN..=Self::MAX)
            .contains(&digits)
            .then_some(Self(digits))
    }

    pub fn get(self) -> usize {
        self.0
    }

    /// The length the policy's `limits.code_length` asks for; the default when it is out of
    /// range (policy validates it, so that only happens with a corrupt answer).
    pub fn from_policy(digits: u32) -> Self {
        usize::try_from(digits)
            .ok()
            .and_then(Self::new)
            .unwrap_or_default()
    }
}

impl Default for CodeLength {
    fn default() -> Self {
        Self(DEFAULT_CODE_LENGTH)
    }
}

/// Why a code was issued; part of the hash input and of every lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Reset,
    Registration,
    /// A code to a registered method proving the user before their methods change
    /// (enrolment's step-up against registration takeover).
    StepUp,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Reset => "reset",
            Purpose::Registration => "registration",
            Purpose::StepUp => "step_up",
        }
    }

    pub fn from_db(raw: &str) -> Option<Self> {
        match raw {
            "reset" => Some(Purpose::Reset),
            "registration" => Some(Purpose::Registration),
            "step_up" => Some(Purpose::StepUp),
            _ => None,
        }
    }
}

/// A one-time code in clear: only ever held in memory, in a sealed delivery, or typed by the user.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Code(<redacted>)")
    }
}

impl Code {
    /// A fresh code from the OS CSPRNG.
    pub fn generate(length: CodeLength) -> Self {
        // The OS generator failing means the machine cannot produce secrets at all; there is no
        // safe fallback, so `UnwrapErr` turning that into a panic is intended.
        let mut rng = rand::rngs::OsRng.unwrap_err();
        Self::generate_with(length, &mut rng)
    }

    fn generate_with(length: CodeLength, rng: &mut impl Rng) -> Self {
        let digits = (0..length.get())
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect();
        Self(digits)
    }

    /// Parses what a user typed: exactly `length` ASCII digits, nothing else (no spaces).
    pub fn parse(raw: &str, length: CodeLength) -> Result<Self, InputError> {
        if raw.len() == length.get() && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InputError::new(
                "code",
                "must be the digits from the message, nothing else",
            ))
        }
    }

    /// Parses what a user typed against a code whose length is not known up front: 6 to 10
    /// ASCII digits. A code keeps the length it was issued with, even if the policy changed
    /// since; a candidate of another length simply never matches the stored hash.
    pub fn parse_any_length(raw: &str) -> Result<Self, InputError> {
        if (CodeLength::MIN..=CodeLength::MAX).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_digit())
        {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InputError::new(
                "code",
                "must be the digits from the message, nothing else",
            ))
        }
    }

    /// The digits; only for the sealed delivery.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// What a code is bound to.
#[derive(Debug, Clone, Copy)]
pub struct CodeBinding<'a> {
    pub purpose: Purpose,
    pub user_id: &'a UserId,
    pub method_id: &'a MethodId,
    pub flow_id: &'a FlowId,
}

impl CodeBinding<'_> {
    fn mac(&self, key: &[u8; 32], code: &Code) -> HmacSha256 {
        let mut mac = keyed(key);
        for part in [
            self.purpose.as_str(),
            self.user_id.as_str(),
            self.method_id.as_str(),
            self.flow_id.as_str(),
            code.expose(),
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    /// The keyed hash stored for `code`.
    pub fn hash(&self, key: &[u8; 32], code: &Code) -> CodeHash {
        CodeHash(self.mac(key, code).finalize().into_bytes().into())
    }

    /// Whether `candidate` is the code behind `stored`, compared in constant time.
    pub fn matches(&self, key: &[u8; 32], candidate: &Code, stored: &CodeHash) -> bool {
        self.mac(key, candidate).verify_slice(&stored.0).is_ok()
    }
}

/// HMAC-SHA256 keyed with `key`.
pub(crate) fn keyed(key: &[u8; 32]) -> HmacSha256 {
    match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm cannot be reached with a 32-byte key.
        Err(_) => unreachable!("HMAC accepts a 32-byte key"),
    }
}

/// A stored keyed hash of a code.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeHash([u8; 32]);

impl fmt::Debug for CodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeHash(..)")
    }
}

impl CodeHash {
    pub fn to_hex(&self) -> String {
        super::hex(&self.0)
    }

    pub fn from_hex(raw: &str) -> Option<Self> {
        super::unhex(raw)?.try_into().ok().map(Self)
    }
}

/// How codes behave; defaults are the security invariants, tests may change them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeRules {
    pub length: CodeLength,
    pub ttl: Duration,
    pub max_attempts: u32,
    /// The minimum time between two codes for the same method.
    pub resend_after: Duration,
}

impl Default for CodeRules {
    fn default() -> Self {
        Self {
            length: CodeLength::default(),
            ttl: DEFAULT_CODE_TTL,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            resend_after: Duration::seconds(30),
        }
    }
}

/// The stored state of the latest code for a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeState {
    pub attempts_left: u32,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub voided: bool,
}

/// Why a verification failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    NoActiveCode,
    Expired,
    TooManyAttempts,
    /// Wrong digits; `attempts_left` is what remains after this try.
    Wrong {
        attempts_left: u32,
    },
}

impl Rejection {
    /// The `reason` of a `code.rejected` event.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::NoActiveCode => "no_active_code",
            Rejection::Expired => "expired",
            Rejection::TooManyAttempts => "too_many_attempts",
            Rejection::Wrong { .. } => "wrong_code",
        }
    }

    /// What the user is told.
    pub fn message(self) -> &'static str {
        match self {
            Rejection::NoActiveCode => "no active code, request a new one",
            Rejection::Expired => "the code has expired, request a new one",
            Rejection::TooManyAttempts => "too many wrong codes, request a new one",
            Rejection::Wrong { .. } => "wrong code",
        }
    }

    pub fn attempts_left(self, state: Option<&CodeState>) -> u32 {
        match self {
            Rejection::Wrong { attempts_left } => attempts_left,
            _ => state.map(|s| s.attempts_left).unwrap_or(0),
        }
    }
}

/// The outcome of one verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Rejected(Rejection),
}

/// Decides a verification. `matches` runs only when the code is still usable, so an expired or
/// used-up code is never compared (and never costs an attempt).
pub fn judge(
    state: Option<&CodeState>,
    now: DateTime<Utc>,
    matches: impl FnOnce() -> bool,
) -> Verdict {
    let Some(state) = state.filter(|s| !s.voided && s.used_at.is_none()) else {
        return Verdict::Rejected(Rejection::NoActiveCode);
    };
    if now >= state.expires_at {
        return Verdict::Rejected(Rejection::Expired);
    }
    if state.attempts_left == 0 {
        return Verdict::Rejected(Rejection::TooManyAttempts);
    }
    if matches() {
        Verdict::Accepted
    } else {
        Verdict::Rejected(Rejection::Wrong {
            attempts_left: state.attempts_left - 1,
        })
    }
}

/// The state change a verdict causes.
impl CodeState {
    pub fn fresh(rules: &CodeRules, issued_at: DateTime<Utc>) -> Self {
        Self {
            attempts_left: rules.max_attempts,
            expires_at: issued_at + rules.ttl,
            used_at: None,
            voided: false,
        }
    }

    pub fn apply(&mut self, verdict: Verdict, now: DateTime<Utc>) {
        match verdict {
            Verdict::Accepted => self.used_at = Some(now),
            Verdict::Rejected(Rejection::Wrong { attempts_left }) => {
                self.attempts_left = attempts_left
            }
            Verdict::Rejected(_) => {}
        }
    }
}

/// A request for another code came too soon after the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSoon;

/// Whether a new code may be issued now, given when the last one was.
pub fn may_resend(
    last_issued_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    resend_after: Duration,
) -> Result<(), TooSoon> {
    match last_issued_at {
        Some(last) if now < last + resend_after => Err(TooSoon),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn ids() -> (UserId, MethodId, FlowId) {
        (
            UserId::parse("alice").unwrap_or_else(|e| panic!("{e}")),
            MethodId::parse("m-1").unwrap_or_else(|e| panic!("{e}")),
            FlowId::parse("f-1").unwrap_or_else(|e| panic!("{e}")),
        )
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn generated_codes_are_digits_of_the_right_length() {
        for len in CodeLength::MIN..=CodeLength::MAX {
            let length = CodeLength::new(len).unwrap_or_default();
            for _ in 0..50 {
                let code = Code::generate(length);
                assert_eq!(code.expose().len(), len);
                assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));
            }
        }
        assert_eq!(CodeLength::new(5), None);
        assert_eq!(CodeLength::new(11), None);
    }

    #[test]
    fn generated_codes_vary_and_digits_are_roughly_uniform() {
        let codes: Vec<Code> = (0..2000)
            .map(|_| Code::generate(CodeLength::default()))
            .collect();
        let distinct: HashSet<&str> = codes.iter().map(|c| c.expose()).collect();
        // 2000 draws out of 10^8: a collision is possible but more than a handful is not.
        assert!(
            distinct.len() > 1990,
            "only {} distinct codes",
            distinct.len()
        );
        let mut counts = [0u32; 10];
        for c in &codes {
            for b in c.expose().bytes() {
                counts[usize::from(b - b'0')] += 1;
            }
        }
        // 16000 digits, 1600 expected per value; a fair generator stays well within ±20%.
        for (digit, n) in counts.iter().enumerate() {
            assert!(
                (1280..=1920).contains(n),
                "digit {digit} drawn {n} times: {counts:?}"
            );
        }
        // Every position takes several values (no stuck digit).
        for pos in 0..8 {
            let values: HashSet<u8> = codes.iter().map(|c| c.expose().as_bytes()[pos]).collect();
            assert_eq!(values.len(), 10, "position {pos}");
        }
    }

    #[test]
    fn parse_accepts_exact_digits_only() {
        let len = CodeLength::default();
        assert!(Code::parse("12345678", len).is_ok());
        for bad in [
            "",
            "1234567",
            "123456789",
            "1234 678",
            "1234567a",
            "１２３４５６７８",
            "-1234567",
            " 12345678",
        ] {
            assert!(Code::parse(bad, len).is_err(), "{bad:?} accepted");
        }
        let six = CodeLength::new(6).unwrap_or_default();
        assert!(Code::parse("123456", six).is_ok());
        assert!(Code::parse("12345678", six).is_err());
    }

    #[test]
    fn any_length_parse_takes_six_to_ten_digits_and_policy_lengths_are_clamped() {
        for ok in ["123456", "1234567", "12345678", "1234567890"] {
            assert!(Code::parse_any_length(ok).is_ok(), "{ok:?} refused");
        }
        for bad in [
            "12345",
            "12345678901",
            "1234 678",
            "１２３４５６",
            "",
            "12345a",
        ] {
            assert!(Code::parse_any_length(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(CodeLength::from_policy(6).get(), 6);
        assert_eq!(CodeLength::from_policy(10).get(), 10);
        assert_eq!(CodeLength::from_policy(0).get(), 8);
        assert_eq!(CodeLength::from_policy(11).get(), 8);
        assert_eq!(CodeLength::from_policy(u32::MAX).get(), 8);
    }

    #[test]
    fn debug_never_shows_the_digits() {
        let code = Code::parse("12345678", CodeLength::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{code:?}").contains("1234"));
    }

    #[test]
    fn hash_binds_key_purpose_user_method_and_flow() {
        let (user, method, flow) = ids();
        let code = Code::parse("12345678", CodeLength::default()).unwrap_or_else(|e| panic!("{e}"));
        let key = [7u8; 32];
        let binding = CodeBinding {
            purpose: Purpose::Reset,
            user_id: &user,
            method_id: &method,
            flow_id: &flow,
        };
        let base = binding.hash(&key, &code);
        assert_eq!(base, binding.hash(&key, &code), "deterministic");
        assert!(!base.to_hex().contains("12345678"));
        assert_eq!(base.to_hex().len(), 64);

        let other_user = UserId::parse("bob").unwrap_or_else(|e| panic!("{e}"));
        let other_method = MethodId::parse("m-2").unwrap_or_else(|e| panic!("{e}"));
        let other_flow = FlowId::parse("f-2").unwrap_or_else(|e| panic!("{e}"));
        let variants = [
            binding.hash(&[8u8; 32], &code),
            CodeBinding {
                purpose: Purpose::Registration,
                ..binding
            }
            .hash(&key, &code),
            CodeBinding {
                user_id: &other_user,
                ..binding
            }
            .hash(&key, &code),
            CodeBinding {
                method_id: &other_method,
                ..binding
            }
            .hash(&key, &code),
            CodeBinding {
                flow_id: &other_flow,
                ..binding
            }
            .hash(&key, &code),
            binding.hash(
                &key,
                &Code::parse("12345679", CodeLength::default()).unwrap_or_else(|e| panic!("{e}")),
            ),
        ];
        for v in &variants {
            assert_ne!(v, &base);
        }
        // Length prefixes: moving a character from one field to the next changes the hash.
        let (u1, m1) = (
            UserId::parse("ab").unwrap_or_else(|e| panic!("{e}")),
            MethodId::parse("c").unwrap_or_else(|e| panic!("{e}")),
        );
        let (u2, m2) = (
            UserId::parse("a").unwrap_or_else(|e| panic!("{e}")),
            MethodId::parse("bc").unwrap_or_else(|e| panic!("{e}")),
        );
        assert_ne!(
            CodeBinding {
                user_id: &u1,
                method_id: &m1,
                ..binding
            }
            .hash(&key, &code),
            CodeBinding {
                user_id: &u2,
                method_id: &m2,
                ..binding
            }
            .hash(&key, &code)
        );
        assert_eq!(CodeHash::from_hex(&base.to_hex()), Some(base));
        assert_eq!(CodeHash::from_hex("zz"), None);
    }

    #[test]
    fn matches_compares_through_the_mac_in_constant_time() {
        let (user, method, flow) = ids();
        let key = [1u8; 32];
        let binding = CodeBinding {
            purpose: Purpose::Reset,
            user_id: &user,
            method_id: &method,
            flow_id: &flow,
        };
        let code = Code::generate(CodeLength::default());
        let stored = binding.hash(&key, &code);
        assert!(binding.matches(&key, &code, &stored));
        let wrong =
            Code::parse("00000000", CodeLength::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(binding.matches(&key, &wrong, &stored), wrong == code);
        assert!(!binding.matches(&[2u8; 32], &code, &stored));
        // The comparison goes through `Mac::verify_slice`, which uses `subtle`'s constant-time
        // equality; a truncated stored hash must be refused, not compared as a prefix.
        let truncated = CodeHash::from_hex(&stored.to_hex()[..62]);
        assert_eq!(truncated, None);
    }

    #[test]
    fn state_machine_expiry_attempts_single_use_and_void() {
        let rules = CodeRules::default();
        let now = t0();
        let mut state = CodeState::fresh(&rules, now);
        assert_eq!(state.attempts_left, 5);
        assert_eq!(state.expires_at, now + Duration::minutes(10));

        // Four wrong tries, then the right one.
        for left in (1..=4).rev() {
            let v = judge(Some(&state), now, || false);
            assert_eq!(
                v,
                Verdict::Rejected(Rejection::Wrong {
                    attempts_left: left
                })
            );
            state.apply(v, now);
        }
        let v = judge(Some(&state), now, || true);
        assert_eq!(v, Verdict::Accepted);
        state.apply(v, now);
        // Single use.
        assert_eq!(
            judge(Some(&state), now, || true),
            Verdict::Rejected(Rejection::NoActiveCode)
        );

        // Five wrong tries exhaust the code, even the right code is then refused.
        let mut state = CodeState::fresh(&rules, now);
        for _ in 0..5 {
            let v = judge(Some(&state), now, || false);
            state.apply(v, now);
        }
        assert_eq!(state.attempts_left, 0);
        assert_eq!(
            judge(Some(&state), now, || true),
            Verdict::Rejected(Rejection::TooManyAttempts)
        );

        // Expiry is checked before the comparison, and is exact at the boundary.
        let state = CodeState::fresh(&rules, now);
        let later = now + Duration::minutes(10);
        assert_eq!(
            judge(Some(&state), later - Duration::seconds(1), || true),
            Verdict::Accepted
        );
        assert_eq!(
            judge(Some(&state), later, || panic!(
                "an expired code must not be compared"
            )),
            Verdict::Rejected(Rejection::Expired)
        );

        // A voided code (a newer one was issued) is no active code; so is none at all.
        let mut voided = CodeState::fresh(&rules, now);
        voided.voided = true;
        assert_eq!(
            judge(Some(&voided), now, || true),
            Verdict::Rejected(Rejection::NoActiveCode)
        );
        assert_eq!(
            judge(None, now, || true),
            Verdict::Rejected(Rejection::NoActiveCode)
        );
    }

    #[test]
    fn rejection_reasons_and_messages() {
        assert_eq!(
            Rejection::NoActiveCode.message(),
            "no active code, request a new one"
        );
        assert_eq!(
            Rejection::Expired.message(),
            "the code has expired, request a new one"
        );
        assert_eq!(
            Rejection::Wrong { attempts_left: 3 }.message(),
            "wrong code"
        );
        assert_eq!(Rejection::Wrong { attempts_left: 3 }.reason(), "wrong_code");
        assert_eq!(Rejection::TooManyAttempts.reason(), "too_many_attempts");
        assert_eq!(Rejection::Wrong { attempts_left: 3 }.attempts_left(None), 3);
    }

    #[test]
    fn resend_throttle() {
        let now = t0();
        let wait = Duration::seconds(30);
        assert_eq!(may_resend(None, now, wait), Ok(()));
        assert_eq!(
            may_resend(Some(now), now + Duration::seconds(29), wait),
            Err(TooSoon)
        );
        assert_eq!(
            may_resend(Some(now), now + Duration::seconds(30), wait),
            Ok(())
        );
        assert_eq!(may_resend(Some(now), now, Duration::zero()), Ok(()));
    }

    #[test]
    fn purposes_round_trip() {
        for p in [Purpose::Reset, Purpose::Registration, Purpose::StepUp] {
            assert_eq!(Purpose::from_db(p.as_str()), Some(p));
        }
        assert_eq!(Purpose::from_db("other"), None);
    }
}
