//! The request header checks of the aggregator server (OpenFL's
//! `check_request`, `valid_collaborator_cn_and_id`) and the client's response
//! header validation, against a federation that agrees with the header in
//! the fields the first input byte selects.
//!
//! Oracles: `check_request` passes exactly when the sender is authorized and
//! receiver, federation uuid and single-certificate CN are equal, and fails
//! with PERMISSION_DENIED (unauthorized sender) or INVALID_ARGUMENT naming
//! the field; the CN rule is OpenFL's; a response header we build validates,
//! any other is refused with INVALID_RESPONSE.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openfl_transport::aggregator::checks::{check_request, response_header, validate_response};
use openfl_transport::aggregator::Federation;
use openfl_transport::error::ofl_code;
use openfl_transport::proto::aggregator::MessageHeader;
use openfl_transport_fuzz::federation::{AGGREGATOR_UUID, COLLABORATORS, FEDERATION_UUID};
use openfl_transport_fuzz::Input;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let Ok(header) = MessageHeader::decode(input.rest()) else { return };
    let federation = federation(flags, &header);
    check(&federation, &header);
    let cn = match flags >> 4 & 3 {
        0 => header.sender.clone(),
        1 => federation.single_col_cert_common_name.clone(),
        2 => COLLABORATORS[0].to_string(),
        _ => header.receiver.clone(),
    };
    check_cn(&federation, &cn, &header.sender);
    check_response(&federation, &header);
});

fn pick(agree: bool, from_header: &str, default: &str) -> String {
    if agree { from_header } else { default }.to_string()
}

fn federation(flags: u8, header: &MessageHeader) -> Federation {
    let mut authorized: Vec<String> = COLLABORATORS.iter().map(|c| c.to_string()).collect();
    if flags & 8 != 0 {
        authorized.push(header.sender.clone());
    }
    Federation {
        aggregator_uuid: pick(flags & 1 != 0, &header.receiver, AGGREGATOR_UUID),
        federation_uuid: pick(flags & 2 != 0, &header.federation_uuid, FEDERATION_UUID),
        single_col_cert_common_name: pick(flags & 4 != 0, &header.single_col_cert_common_name, ""),
        authorized_collaborators: authorized.into(),
    }
}

fn check(federation: &Federation, header: &MessageHeader) {
    let authorized = federation.authorized_collaborators.contains(&header.sender);
    let wrong_field = [
        ("header.receiver", &header.receiver, &federation.aggregator_uuid),
        ("header.federation_uuid", &header.federation_uuid, &federation.federation_uuid),
        ("header.single_col_cert_common_name", &header.single_col_cert_common_name, &federation.single_col_cert_common_name),
    ]
    .into_iter()
    .find(|(_, got, want)| got != want);
    match (check_request(federation, header), authorized, wrong_field) {
        (Ok(()), true, None) => {}
        (Err(e), false, _) => {
            assert_eq!(e.code(), ofl_code::PermissionDenied);
            assert!(e.message().starts_with("header.sender: "), "{}", e.message());
            assert!(e.message().contains("is not among the authorized collaborators"), "{}", e.message());
        }
        (Err(e), true, Some((field, _, _))) => {
            assert_eq!(e.code(), ofl_code::InvalidArgument);
            assert!(e.message().starts_with(&format!("{field} is ")), "{}", e.message());
        }
        (result, authorized, wrong) => panic!("{result:?} for authorized={authorized}, wrong field {wrong:?}"),
    }
}

fn check_cn(federation: &Federation, cn: &str, sender: &str) {
    let authorized = federation.authorized_collaborators.iter().any(|c| c == sender);
    let expected_cn =
        if federation.single_col_cert_common_name.is_empty() { sender } else { &federation.single_col_cert_common_name };
    let valid = federation.valid_collaborator_cn_and_id(cn, sender);
    assert_eq!(valid, authorized && cn == expected_cn);
    if valid {
        assert!(federation.certificate_may_speak(cn), "a valid CN must pass the pre-check");
    } else {
        let cause = federation.refusal_cause(cn, sender);
        assert_eq!(cause.contains("is not among the authorized collaborators"), !authorized, "{cause}");
    }
}

fn check_response(federation: &Federation, header: &MessageHeader) {
    let ours = response_header(federation, &header.sender);
    assert_eq!(validate_response(federation, &header.sender, Some(&ours)), Ok(()));
    let result = validate_response(federation, &header.receiver, Some(header));
    let expected = response_header(federation, &header.receiver);
    if *header == expected {
        assert_eq!(result, Ok(()));
    } else {
        assert_eq!(result.unwrap_err().code(), ofl_code::InvalidResponse);
    }
    assert_eq!(validate_response(federation, &header.sender, None).unwrap_err().code(), ofl_code::InvalidResponse);
}
