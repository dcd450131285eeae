//! The state icons, committed as PNGs (drawn by `icons/make-icons.sh`) and
//! compiled in, decoded once at start.

use tray_icon::Icon;

use crate::view::Look;

/// Every state's icon, decoded.
pub struct Icons {
    up_to_date: Icon,
    syncing: Icon,
    paused: Icon,
    offline: Icon,
    error: Icon,
}

impl Icons {
    /// Decodes the compiled-in pictures.
    pub fn load() -> anyhow::Result<Self> {
        Ok(Self {
            up_to_date: decode(include_bytes!("../icons/up-to-date.png"))?,
            syncing: decode(include_bytes!("../icons/syncing.png"))?,
            paused: decode(include_bytes!("../icons/paused.png"))?,
            offline: decode(include_bytes!("../icons/offline.png"))?,
            error: decode(include_bytes!("../icons/error.png"))?,
        })
    }

    /// The icon for a look.
    pub fn of(&self, look: Look) -> &Icon {
        match look {
            Look::UpToDate => &self.up_to_date,
            Look::Syncing => &self.syncing,
            Look::Paused => &self.paused,
            Look::Offline => &self.offline,
            Look::Error => &self.error,
        }
    }
}

/// A PNG as the RGBA pixels tray-icon takes.
fn decode(png_bytes: &[u8]) -> anyhow::Result<Icon> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(
        png::Transformations::normalize_to_color8() | png::Transformations::ALPHA,
    );
    let mut reader = decoder.read_info()?;
    let mut pixels = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let frame = reader.next_frame(&mut pixels)?;
    anyhow::ensure!(
        frame.color_type == png::ColorType::Rgba,
        "icon is {:?}, not RGBA",
        frame.color_type
    );
    pixels.truncate(frame.buffer_size());
    Ok(Icon::from_rgba(pixels, frame.width, frame.height)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_icon_decodes() {
        let icons = Icons::load().unwrap();
        for look in [
            Look::UpToDate,
            Look::Syncing,
            Look::Paused,
            Look::Offline,
            Look::Error,
        ] {
            let _ = icons.of(look);
        }
    }
}
