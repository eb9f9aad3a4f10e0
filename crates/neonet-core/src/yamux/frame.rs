//! The yamux wire format: protocol version, header size, frame types, flags and GoAway
//! codes (a frame is a 12-byte big-endian header: version, type, flags, stream id,
//! length). Re-exported from `neonet_core::yamux`.

pub const VERSION: u8 = 0;
pub const HEADER_SIZE: usize = 12;

pub const TYPE_DATA: u8 = 0x0;
pub const TYPE_WINDOW_UPDATE: u8 = 0x1;
pub const TYPE_PING: u8 = 0x2;
pub const TYPE_GO_AWAY: u8 = 0x3;

pub const FLAG_SYN: u16 = 0x1;
pub const FLAG_ACK: u16 = 0x2;
pub const FLAG_FIN: u16 = 0x4;
pub const FLAG_RST: u16 = 0x8;

pub const GO_AWAY_NORMAL: u32 = 0x0;
pub const GO_AWAY_PROTOCOL_ERROR: u32 = 0x1;
pub const GO_AWAY_INTERNAL_ERROR: u32 = 0x2;
