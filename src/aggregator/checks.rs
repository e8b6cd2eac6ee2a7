//! The checks OpenFL's aggregator server applies to every request header, and
//! the header it puts on every response (`check_request`, `get_header`).
//!
//! OpenFL 1.6 answers a failed `check_request` with UNKNOWN; we answer with a
//! precise code and a message that names the field.

use crate::error::{ofl_code, Error, Result};
use crate::proto::aggregator::MessageHeader;

use super::logic::Federation;

/// OpenFL's `check_request`: sender authorized, receiver is this aggregator,
/// same federation, same single-certificate CN.
pub fn check_request(federation: &Federation, header: &MessageHeader) -> Result<()> {
    if !federation.is_authorized(&header.sender) {
        return Err(Error::new(
            ofl_code::PermissionDenied,
            format!("header.sender: {}", federation.not_authorized(&header.sender)),
        ));
    }
    expect_field("header.receiver", &header.receiver, &federation.aggregator_uuid)?;
    expect_field("header.federation_uuid", &header.federation_uuid, &federation.federation_uuid)?;
    expect_field(
        "header.single_col_cert_common_name",
        &header.single_col_cert_common_name,
        &federation.single_col_cert_common_name,
    )
}

fn expect_field(field: &str, got: &str, expected: &str) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!("{field} is {got:?}, expected {expected:?}")))
    }
}

/// OpenFL's `get_header`: the header of a response to `collaborator`.
pub fn response_header(federation: &Federation, collaborator: &str) -> MessageHeader {
    MessageHeader {
        sender: federation.aggregator_uuid.clone(),
        receiver: collaborator.to_string(),
        federation_uuid: federation.federation_uuid.clone(),
        single_col_cert_common_name: federation.single_col_cert_common_name.clone(),
    }
}

/// OpenFL's `validate_response` (client side): the reply's header must be
/// exactly what the aggregator would send to `collaborator`.
pub fn validate_response(
    federation: &Federation,
    collaborator: &str,
    header: Option<&MessageHeader>,
) -> Result<()> {
    let header = header.ok_or_else(|| Error::new(ofl_code::InvalidResponse, "reply has no header"))?;
    let expected = response_header(federation, collaborator);
    let fields = [
        ("receiver", &header.receiver, &expected.receiver),
        ("sender", &header.sender, &expected.sender),
        ("federation_uuid", &header.federation_uuid, &expected.federation_uuid),
        (
            "single_col_cert_common_name",
            &header.single_col_cert_common_name,
            &expected.single_col_cert_common_name,
        ),
    ];
    for (field, got, want) in fields {
        if got != want {
            return Err(Error::new(
                ofl_code::InvalidResponse,
                format!("reply header.{field} is {got:?}, expected {want:?}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn federation() -> Federation {
        Federation {
            aggregator_uuid: "agg".into(),
            federation_uuid: "fed".into(),
            single_col_cert_common_name: String::new(),
            authorized_collaborators: vec!["col1".into(), "col2".into()].into(),
        }
    }

    fn header(sender: &str) -> MessageHeader {
        MessageHeader {
            sender: sender.into(),
            receiver: "agg".into(),
            federation_uuid: "fed".into(),
            single_col_cert_common_name: String::new(),
        }
    }

    #[test]
    fn accepts_a_correct_header() {
        assert_eq!(check_request(&federation(), &header("col1")), Ok(()));
    }

    #[test]
    fn each_wrong_field_gets_its_code_and_name() {
        let f = federation();
        let e = check_request(&f, &header("mallory")).unwrap_err();
        assert_eq!(e.code(), ofl_code::PermissionDenied);
        assert!(e.message().contains("header.sender"));

        let mut h = header("col1");
        h.receiver = "other".into();
        let e = check_request(&f, &h).unwrap_err();
        assert_eq!(e.code(), ofl_code::InvalidArgument);
        assert!(e.message().contains("header.receiver"), "{}", e.message());

        let mut h = header("col1");
        h.federation_uuid = "other".into();
        assert!(check_request(&f, &h).unwrap_err().message().contains("header.federation_uuid"));

        let mut h = header("col1");
        h.single_col_cert_common_name = "shared".into();
        assert!(check_request(&f, &h).unwrap_err().message().contains("single_col_cert_common_name"));
    }

    #[test]
    fn cn_and_id_follow_openfl() {
        let mut f = federation();
        assert!(f.valid_collaborator_cn_and_id("col1", "col1"));
        assert!(!f.valid_collaborator_cn_and_id("col1", "col2"));
        assert!(!f.valid_collaborator_cn_and_id("col3", "col3"));
        f.single_col_cert_common_name = "shared".into();
        assert!(f.valid_collaborator_cn_and_id("shared", "col2"));
        assert!(!f.valid_collaborator_cn_and_id("col2", "col2"));
    }

    #[test]
    fn response_validation_names_the_field() {
        let f = federation();
        let good = response_header(&f, "col1");
        assert_eq!(validate_response(&f, "col1", Some(&good)), Ok(()));
        let mut bad = good.clone();
        bad.sender = "evil".into();
        let e = validate_response(&f, "col1", Some(&bad)).unwrap_err();
        assert_eq!(e.code(), ofl_code::InvalidResponse);
        assert!(e.message().contains("header.sender"));
        assert_eq!(validate_response(&f, "col1", None).unwrap_err().code(), ofl_code::InvalidResponse);
    }
}
