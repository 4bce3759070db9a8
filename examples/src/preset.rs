//! Framing presets selectable from the command line.

use framing::Config;

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
}
