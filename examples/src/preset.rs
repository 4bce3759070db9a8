//! Framing presets selectable from the command line.

use framing::{Config, LengthField};

/// The framing layouts the demos speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Preset {
    /// 4-byte big-endian length (Python `multiprocessing.connection`,
    /// Thrift framed, Erlang `{packet,4}`).
    #[default]
    U32Be,
    /// 2-byte big-endian length (frames up to 65535 bytes).
    U16Be,
    /// LEB128 varint length.
    Varint,
    /// Python `multiprocessing.connection`, including its `ff ff ff ff` +
    /// 8-byte form for frames over 2 GiB.
    Python,
}

impl Preset {
    /// The layout with this maximum frame length (`None`: the preset's
    /// default).
    ///
    /// # Errors
    /// The framing crate's configuration error, e.g. a maximum the length
    /// field cannot express.
    pub fn config(self, max_frame: Option<usize>) -> Result<Config, framing::Error> {
        let base = match self {
            Preset::U32Be => Config::u32_be(),
            Preset::U16Be => Config::u16_be(),
            Preset::Varint => Config::varint(),
            Preset::Python => Config::python(),
        };
        match max_frame {
            None => Ok(base),
            Some(max) => base.to_builder().max_frame_len(max).build(),
        }
    }

    /// The name as typed on the command line (`u16-be`).
    pub fn name(self) -> &'static str {
        match self {
            Preset::U32Be => "u32-be",
            Preset::U16Be => "u16-be",
            Preset::Varint => "varint",
            Preset::Python => "python",
        }
    }
}

/// The largest payload one frame of `config` carries: its maximum frame
/// length, or less when the length field cannot say more (65535 bytes for a
/// 2-byte field, whatever the maximum).
pub fn largest_payload(config: &Config) -> usize {
    let field = match config.length_field() {
        LengthField::Fixed { width, .. } if width < 8 => (1u64 << (8 * u32::from(width))) - 1,
        LengthField::Fixed { .. } | LengthField::Varint | LengthField::Python => u64::MAX,
    };
    let field = field.saturating_sub(config.adjustment().max(0).unsigned_abs());
    config
        .max_frame_len()
        .min(usize::try_from(field).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_payload_is_what_the_length_field_can_say() {
        let u16 = Preset::U16Be.config(None).unwrap();
        assert_eq!(largest_payload(&u16), 65535);
        let small = Preset::U16Be.config(Some(1000)).unwrap();
        assert_eq!(largest_payload(&small), 1000);
        for preset in [Preset::U32Be, Preset::Varint, Preset::Python] {
            let config = preset.config(None).unwrap();
            assert_eq!(
                largest_payload(&config),
                framing::DEFAULT_MAX_FRAME_LEN,
                "{preset:?}"
            );
        }
        let huge = Preset::U32Be.config(Some(1 << 33)).unwrap();
        assert_eq!(largest_payload(&huge), u32::MAX as usize);
    }
}
