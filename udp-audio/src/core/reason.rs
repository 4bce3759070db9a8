//! Why the receiver dropped a datagram: one enum instead of strings, counted in
//! [`crate::jitter::RecvStats::bad`], shown with `Display` in reports and serialized as the
//! same snake_case names the JSON report always had (`"truncated"`, `"ssrc_change"`, ...).

use serde::Serialize;

use crate::error::ParseErrorKind;

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Why a datagram was dropped. Variants are in the order of their names, so a map
        /// keyed by them lists reasons alphabetically, as the string keys did.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[non_exhaustive]
        pub enum DropReason {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)*
        }

        impl DropReason {
            /// The stable name (the JSON key).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }

            /// Every reason, in order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
        }
    };
}

reasons! {
    /// The RTP padding count is invalid.
    BadPadding => "bad_padding",
    /// The playout buffer is full.
    BufferFull => "buffer_full",
    /// The CSRC list runs past the datagram.
    CsrcBeyondDatagram => "csrc_beyond_datagram",
    /// An RTP packet with no payload.
    EmptyPayload => "empty_payload",
    /// The header extension runs past the datagram.
    ExtensionBeyondDatagram => "extension_beyond_datagram",
    /// From another address than the chosen source's.
    OtherAddress => "other_address",
    /// Its audio overlaps audio already buffered.
    Overlap => "overlap",
    /// An L16 payload that is not a whole number of frames.
    PartialFrame => "partial_frame",
    /// From a source still on probation when another was chosen.
    Probation => "probation",
    /// Another payload type than the stream's.
    PtChange => "pt_change",
    /// An RTCP packet shorter than it says.
    RtcpTruncated => "rtcp_truncated",
    /// An RTCP packet of an unexpected type.
    RtcpType => "rtcp_type",
    /// The same timestamp as a buffered packet with another sequence number.
    SameTimestamp => "same_timestamp",
    /// A sequence number jump RFC 3550 A.1 does not accept (yet).
    SeqJump => "seq_jump",
    /// Another SSRC than the chosen source's.
    SsrcChange => "ssrc_change",
    /// Too far ahead of the playout point.
    TooEarly => "too_early",
    /// Shorter than the fixed RTP header.
    Truncated => "truncated",
    /// Not RTP version 2.
    WrongVersion => "wrong_version",
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ParseErrorKind> for DropReason {
    fn from(kind: ParseErrorKind) -> Self {
        match kind {
            ParseErrorKind::Truncated => DropReason::Truncated,
            ParseErrorKind::WrongVersion => DropReason::WrongVersion,
            ParseErrorKind::CsrcBeyondDatagram => DropReason::CsrcBeyondDatagram,
            ParseErrorKind::ExtensionBeyondDatagram => DropReason::ExtensionBeyondDatagram,
            ParseErrorKind::BadPadding => DropReason::BadPadding,
            ParseErrorKind::RtcpTruncated => DropReason::RtcpTruncated,
            ParseErrorKind::RtcpType => DropReason::RtcpType,
            ParseErrorKind::PartialFrame => DropReason::PartialFrame,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn names_are_sorted_unique_and_serialize_as_the_old_strings() {
        let names: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "enum order is name order, no duplicates");
        for r in DropReason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
            assert_eq!(r.to_string(), r.as_str());
        }
        let map = std::collections::BTreeMap::from([(DropReason::SsrcChange, 2u64)]);
        assert_eq!(serde_json::to_string(&map).unwrap(), r#"{"ssrc_change":2}"#);
    }

    #[test]
    fn parse_error_kinds_map_to_the_reason_of_the_same_name() {
        use ParseErrorKind::*;
        for k in [
            Truncated,
            WrongVersion,
            CsrcBeyondDatagram,
            ExtensionBeyondDatagram,
            BadPadding,
            RtcpTruncated,
            RtcpType,
            PartialFrame,
        ] {
            assert_eq!(DropReason::from(k).as_str(), k.as_str());
        }
    }
}
