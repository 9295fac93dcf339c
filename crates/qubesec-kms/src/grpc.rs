//! The one place where domain errors become gRPC status codes.
//!
//! | domain error                         | gRPC code          |
//! |--------------------------------------|--------------------|
//! | `InvalidRequest` (empty, oversized, bad layout) | `InvalidArgument` |
//! | `NotAuthentic` (tampered ciphertext) | `InvalidArgument`  |
//! | `UnknownKey`                         | `NotFound`         |
//! | `Unavailable` (token or session lost)| `Unavailable`      |
//! | `Pkcs11`, `Keystore`                 | `FailedPrecondition` |
//! | anything else                        | `Internal`         |

use tonic::{Code, Status};

use crate::error::Error;

/// The gRPC code for a domain error.
pub fn code(err: &Error) -> Code {
    match err {
        Error::InvalidRequest(_) | Error::NotAuthentic(_) => Code::InvalidArgument,
        Error::UnknownKey(_) => Code::NotFound,
        Error::Unavailable(_) => Code::Unavailable,
        Error::Pkcs11(_) | Error::Keystore(_) => Code::FailedPrecondition,
        Error::Bundle(_) | Error::Socket { .. } | Error::Internal(_) => Code::Internal,
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        Status::new(code(&err), err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_precise() {
        assert_eq!(code(&Error::InvalidRequest("x".into())), Code::InvalidArgument);
        assert_eq!(code(&Error::NotAuthentic("k".into())), Code::InvalidArgument);
        assert_eq!(code(&Error::UnknownKey("k".into())), Code::NotFound);
        assert_eq!(code(&Error::Unavailable("gone".into())), Code::Unavailable);
        let status = Status::from(Error::UnknownKey("qubesec-kms/v9/0000000000000000".into()));
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().contains("qubesec-kms/v9/"));
    }
}
