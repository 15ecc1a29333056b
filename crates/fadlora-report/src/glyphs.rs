//! Text for bitmap figures, set with the embedded font.
//!
//! plotters 0.3.7's ab_glyph text path draws each glyph at the pen position without the
//! glyph's left side bearing, so letters drift apart and together ("E val", "fi ne"). This
//! wrapper around a backend lays text out itself (advances, kerning, bearings) with the same
//! font and hands plotters the pixels; everything else passes straight through. SVG output
//! does not need it: the SVG backend writes `<text>` elements.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use plotters::prelude::DrawingBackend;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
};

use crate::figures::FONT_BYTES;

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| {
        FontRef::try_from_slice(FONT_BYTES).expect("the embedded DejaVu Sans is a valid font")
    })
}

/// A line of text rasterised with its top-left corner at (0, 0).
struct Layout {
    width: i32,
    height: i32,
    /// (x, y, coverage in 0..=1).
    pixels: Vec<(i32, i32, f32)>,
}

/// `size` is plotters' font size, which its ab_glyph path uses as the pixel scale.
fn layout(text: &str, size: f64) -> Layout {
    let font = font();
    let scale = PxScale::from(size as f32);
    let scaled = font.as_scaled(scale);
    let ascent = scaled.ascent();
    let height = (ascent - scaled.descent()).ceil() as i32;
    let mut pixels = Vec::new();
    let mut caret = 0.0f32;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            caret += scaled.kern(p, id);
        }
        let glyph = id.with_scale_and_position(scale, point(caret, ascent));
        if let Some(outlined) = font.outline_glyph(glyph) {
            let bounds = outlined.px_bounds();
            let (x0, y0) = (bounds.min.x as i32, bounds.min.y as i32);
            outlined.draw(|x, y, coverage| {
                if coverage > 0.0 {
                    pixels.push((x0 + x as i32, y0 + y as i32, coverage.min(1.0)));
                }
            });
        }
        caret += scaled.h_advance(id);
        previous = Some(id);
    }
    Layout {
        width: caret.ceil() as i32,
        height,
        pixels,
    }
}

/// `inner` with text drawn by [`layout`].
pub(crate) struct GlyphText<B> {
    inner: B,
}

impl<B: DrawingBackend> GlyphText<B> {
    pub fn new(inner: B) -> Self {
        GlyphText { inner }
    }
}

impl<B: DrawingBackend> DrawingBackend for GlyphText<B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        (iw, ih): (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.blit_bitmap(pos, (iw, ih), src)
    }

    fn draw_text<TStyle: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let layout = layout(text, style.size());
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0,
            HPos::Center => -layout.width / 2,
            HPos::Right => -layout.width,
        };
        let dy = match anchor.v_pos {
            VPos::Top => 0,
            VPos::Center => -layout.height / 2,
            VPos::Bottom => -layout.height,
        };
        let transform = style.transform();
        for (x, y, coverage) in layout.pixels {
            let (tx, ty) = transform.transform(x + dx, y + dy);
            self.inner.draw_pixel(
                (pos.0 + tx, pos.1 + ty),
                BackendColor {
                    alpha: color.alpha * coverage as f64,
                    rgb: color.rgb,
                },
            )?;
        }
        Ok(())
    }

    fn estimate_text_size<TStyle: BackendTextStyle>(
        &self,
        text: &str,
        style: &TStyle,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        let layout = layout(text, style.size());
        Ok((layout.width.max(0) as u32, layout.height.max(0) as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_advances_with_the_text() {
        let one = layout("E", 20.0);
        let two = layout("Ev", 20.0);
        assert!(one.width > 5 && two.width > one.width);
        assert!(one.height >= 20 && one.height <= 26);
        // Every pixel of "E" lies inside its box (glyph bearings included).
        assert!(one
            .pixels
            .iter()
            .all(|(x, y, _)| *x >= 0 && *x <= one.width && *y >= 0 && *y <= one.height));
        assert!(layout(" ", 20.0).pixels.is_empty());
    }
}
