//! Counting WebSocket messages as their bytes pass through, without decoding them: each frame's
//! header (RFC 6455 §5.2) says how long its payload is, so the meter reads headers and skips
//! payloads, sums the frames of each message and says when one grows past the limit.

/// What a run of bytes held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Metered {
    /// Messages that ended in it (their last frame's payload passed).
    pub messages: u64,
}

/// A message over the limit: its length so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a WebSocket message of at least {0} bytes is over the limit")]
pub struct TooLarge(pub u64);

/// One direction's frames.
#[derive(Debug)]
pub struct FrameMeter {
    limit: u64,
    /// The header read so far (at most 14 bytes).
    header: [u8; 14],
    header_len: usize,
    /// Payload bytes of the current frame still to pass.
    payload_left: u64,
    /// Whether the current frame ends its message (FIN on a data frame).
    ends_message: bool,
    /// The message's length so far.
    message_len: u64,
}

impl FrameMeter {
    /// A meter refusing messages longer than `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self { limit, header: [0; 14], header_len: 0, payload_left: 0, ends_message: false, message_len: 0 }
    }

    /// Reads `bytes`, the next ones of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<Metered, TooLarge> {
        let mut metered = Metered::default();
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let passed = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= passed;
                bytes = &bytes[usize::try_from(passed).unwrap_or(bytes.len())..];
                if self.payload_left == 0 && self.ends_message {
                    metered.messages += 1;
                    self.ends_message = false;
                }
                continue;
            }
            self.header[self.header_len] = bytes[0];
            self.header_len += 1;
            bytes = &bytes[1..];
            if header_length(&self.header[..self.header_len]) == Some(self.header_len) {
                self.start_frame(&mut metered)?;
            }
        }
        Ok(metered)
    }

    /// The header is whole: the frame's payload comes next.
    fn start_frame(&mut self, metered: &mut Metered) -> Result<(), TooLarge> {
        let header = &self.header[..self.header_len];
        let (fin, opcode) = (header[0] & 0x80 != 0, header[0] & 0x0F);
        let payload = match header[1] & 0x7F {
            126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
            127 => u64::from_be_bytes(header[2..10].try_into().unwrap_or([0xFF; 8])),
            short => u64::from(short),
        };
        self.header_len = 0;
        // Control frames (close, ping, pong) may come between a message's frames and are no
        // part of it.
        let control = opcode >= 8;
        if !control {
            if opcode != 0 {
                self.message_len = 0;
            }
            self.message_len = self.message_len.saturating_add(payload);
            if self.message_len > self.limit {
                return Err(TooLarge(self.message_len));
            }
        }
        self.ends_message = fin && !control;
        self.payload_left = payload;
        if payload == 0 && self.ends_message {
            metered.messages += 1;
            self.ends_message = false;
        }
        Ok(())
    }
}

/// The length of a frame header whose first bytes are `read`, once enough is read to know it.
fn header_length(read: &[u8]) -> Option<usize> {
    let second = *read.get(1)?;
    let extended = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    Some(2 + extended + mask)
}

/// A close frame from the gateway to the client (unmasked, as a server's): `code` and no reason.
pub fn close_frame(code: u16) -> [u8; 4] {
    let [high, low] = code.to_be_bytes();
    [0x88, 0x02, high, low]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a client sends it (masked), with `payload` bytes.
    fn frame(fin: bool, opcode: u8, payload: usize) -> Vec<u8> {
        let mut bytes = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload {
            0..=125 => bytes.push(0x80 | u8::try_from(payload).unwrap()),
            126..=65535 => {
                bytes.push(0x80 | 126);
                bytes.extend(u16::try_from(payload).unwrap().to_be_bytes());
            }
            _ => {
                bytes.push(0x80 | 127);
                bytes.extend((payload as u64).to_be_bytes());
            }
        }
        bytes.extend([1, 2, 3, 4]);
        bytes.extend(std::iter::repeat_n(b'x', payload));
        bytes
    }

    #[test]
    fn messages_are_counted_however_the_bytes_are_cut() {
        let stream: Vec<u8> = [frame(true, 1, 5), frame(true, 2, 300), frame(true, 9, 0), frame(true, 1, 70_000)]
            .into_iter()
            .flatten()
            .collect();
        for cut in [1, 2, 3, 7, 64, 1000, stream.len()] {
            let mut meter = FrameMeter::new(1 << 20);
            let messages: u64 = stream.chunks(cut).map(|chunk| meter.feed(chunk).unwrap().messages).sum();
            assert_eq!(messages, 3, "a ping is no message (cut {cut})");
        }
    }

    #[test]
    fn a_message_is_the_sum_of_its_frames_and_a_long_one_is_refused() {
        let mut meter = FrameMeter::new(100);
        assert_eq!(meter.feed(&frame(false, 1, 60)).unwrap().messages, 0);
        assert_eq!(meter.feed(&frame(true, 10, 3)).unwrap().messages, 0, "a pong between fragments");
        assert_eq!(meter.feed(&frame(false, 0, 40)).unwrap().messages, 0);
        assert_eq!(meter.feed(&frame(true, 0, 1)), Err(TooLarge(101)));
        let mut fresh = FrameMeter::new(100);
        assert_eq!(fresh.feed(&[frame(true, 1, 100), frame(true, 2, 100)].concat()).unwrap().messages, 2);
        assert!(fresh.feed(&frame(true, 2, 101)).is_err());
        let mut huge = FrameMeter::new(100);
        assert!(huge.feed(&frame(true, 2, 70_000)[..14]).is_err(), "refused from the header, before the payload");
    }

    #[test]
    fn the_close_frame_carries_its_code() {
        assert_eq!(close_frame(1009), [0x88, 0x02, 0x03, 0xF1]);
    }
}
