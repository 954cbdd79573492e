//! Sealing of code deliveries: the only messages on the bus that carry a code and a full
//! destination.
//!
//! A [`Delivery`] is encoded and encrypted with XChaCha20-Poly1305 under `SSPR_CODE_KEY`, which
//! only verification and notification hold, with a fresh random 192-bit nonce and the delivery
//! id as associated data (so a ciphertext cannot be replayed under another delivery id).
//! Anything else on the bus or at rest (outbox rows, stream storage) sees only ciphertext.
//! `key_id` names the key that sealed it (empty = the bare key, id `0`), so deliveries sealed
//! before a key rotation still open with the previous key ([`open_with`]).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use prost::Message;
use rand::RngCore;
use sspr_proto::internal::notification::v1::{Delivery, SealedDelivery};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("encryption failed")]
    Encrypt,
    /// Wrong key, tampered ciphertext or mismatched delivery id.
    #[error("the delivery could not be decrypted (wrong SSPR_CODE_KEY, or tampered message)")]
    Open,
    #[error("the decrypted delivery is malformed")]
    Decode,
}

/// Encrypts `delivery` under `key` (the bare key, id `0`).
pub fn seal(key: &[u8; 32], delivery: &Delivery) -> Result<SealedDelivery, SealError> {
    seal_with_id("", key, delivery)
}

/// Encrypts `delivery` under `key` and names the key by `key_id`, so the opener can pick it
/// from its key ring after a rotation.
pub fn seal_with_id(
    key_id: &str,
    key: &[u8; 32],
    delivery: &Delivery,
) -> Result<SealedDelivery, SealError> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; 24];
    rand::rng().fill_bytes(&mut nonce);
    let plaintext = delivery.encode_to_vec();
    let ciphertext = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &plaintext,
                aad: delivery.delivery_id.as_bytes(),
            },
        )
        .map_err(|_| SealError::Encrypt)?;
    Ok(SealedDelivery {
        delivery_id: delivery.delivery_id.clone(),
        nonce: nonce.to_vec(),
        ciphertext,
        key_id: key_id.to_owned(),
    })
}

/// Decrypts a sealed delivery with the key its `key_id` names in the caller's ring
/// (`keys`), and checks that it is the delivery it claims to be. An unknown key id is
/// [`SealError::Open`], as a wrong key is.
pub fn open_with<'k>(
    keys: impl Fn(&str) -> Option<&'k [u8; 32]>,
    sealed: &SealedDelivery,
) -> Result<Delivery, SealError> {
    let key = keys(&sealed.key_id).ok_or(SealError::Open)?;
    open(key, sealed)
}

/// Decrypts a sealed delivery and checks that it is the delivery it claims to be.
pub fn open(key: &[u8; 32], sealed: &SealedDelivery) -> Result<Delivery, SealError> {
    let nonce: [u8; 24] = sealed
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| SealError::Open)?;
    let cipher = XChaCha20Poly1305::new(key.into());
    let plaintext = cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: sealed.delivery_id.as_bytes(),
            },
        )
        .map_err(|_| SealError::Open)?;
    let delivery = Delivery::decode(plaintext.as_slice()).map_err(|_| SealError::Decode)?;
    if delivery.delivery_id != sealed.delivery_id {
        return Err(SealError::Open);
    }
    Ok(delivery)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> Delivery {
        Delivery {
            delivery_id: "d-1".into(),
            destination: "alice@example.com".into(),
            code: "12345678".into(),
            ..Default::default()
        }
    }

    #[test]
    fn round_trip_and_no_plaintext_on_the_wire() {
        let key = [9u8; 32];
        let sealed = seal(&key, &delivery()).expect("seal");
        let wire = sealed.encode_to_vec();
        assert!(
            !wire.windows(8).any(|w| w == b"12345678"),
            "code visible in sealed bytes"
        );
        assert!(
            !wire.windows(9).any(|w| w == b"alice@exa"),
            "destination visible in sealed bytes"
        );
        assert_eq!(open(&key, &sealed), Ok(delivery()));
    }

    #[test]
    fn wrong_key_tamper_and_swapped_id_are_refused() {
        let sealed = seal(&[1u8; 32], &delivery()).expect("seal");
        assert_eq!(open(&[2u8; 32], &sealed), Err(SealError::Open));
        let mut tampered = sealed.clone();
        if let Some(b) = tampered.ciphertext.first_mut() {
            *b ^= 1;
        }
        assert_eq!(open(&[1u8; 32], &tampered), Err(SealError::Open));
        let mut swapped = sealed;
        swapped.delivery_id = "d-2".into();
        assert_eq!(open(&[1u8; 32], &swapped), Err(SealError::Open));
    }

    #[test]
    fn the_key_id_picks_the_key_of_the_ring() {
        let (old, new) = ([1u8; 32], [2u8; 32]);
        let ring = |kid: &str| match kid {
            "a" => Some(&old),
            "b" => Some(&new),
            _ => None,
        };
        let sealed = seal_with_id("a", &old, &delivery()).expect("seal");
        assert_eq!(sealed.key_id, "a");
        assert_eq!(open_with(ring, &sealed), Ok(delivery()));
        let mut relabelled = sealed.clone();
        relabelled.key_id = "b".into();
        assert_eq!(open_with(ring, &relabelled), Err(SealError::Open));
        relabelled.key_id = "c".into();
        assert_eq!(open_with(ring, &relabelled), Err(SealError::Open));
    }
}
