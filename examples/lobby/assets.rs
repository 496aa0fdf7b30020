//! The font and icon, loaded from `--assets` at run time, with fallbacks when they are
//! missing or broken.

use std::path::Path;

use bevy::asset::LoadState;
use bevy::prelude::*;

use crate::ui::ViewCache;

pub const FONT_PATH: &str = "fonts/DejaVuSans.ttf";
pub const ICON_PATH: &str = "icons/icon.png";

/// What the UI loads from `assets/`; `None` when the file is missing (the UI falls back).
#[derive(Resource, Clone)]
pub struct UiAssets {
    pub font: Option<Handle<Font>>,
    pub icon: Option<Handle<Image>>,
    /// Whether each file exists on disk (checked before the app starts).
    font_on_disk: bool,
    icon_on_disk: bool,
}

/// Checks which assets exist in `dir`, saying which are missing (stderr and a `LOBBY`
/// line); nothing is loaded yet.
pub fn check_assets(dir: &Path) -> UiAssets {
    let exists = |rel: &str| {
        let path = dir.join(rel);
        let ok = path.is_file();
        if !ok {
            eprintln!(
                "lobby: asset {} is missing: {}",
                path.display(),
                match rel {
                    FONT_PATH => "using Bevy's built-in font instead",
                    _ => "starting without the icon",
                }
            );
            println!("LOBBY missing_asset path={}", path.display());
        }
        ok
    };
    UiAssets {
        font: None,
        icon: None,
        font_on_disk: exists(FONT_PATH),
        icon_on_disk: exists(ICON_PATH),
    }
}

/// Starts loading the assets that exist on disk.
pub fn load_assets(server: &AssetServer, assets: &mut UiAssets) {
    if assets.font_on_disk {
        assets.font = Some(server.load(FONT_PATH));
    }
    if assets.icon_on_disk {
        assets.icon = Some(server.load(ICON_PATH));
    }
}

/// Falls back when an asset that exists on disk still fails to load (corrupt file).
pub fn watch_assets(
    server: Res<AssetServer>,
    mut assets: ResMut<UiAssets>,
    mut cache: ResMut<ViewCache>,
) {
    if let Some(font) = &assets.font
        && let Some(LoadState::Failed(e)) = server.get_load_state(font)
    {
        eprintln!("lobby: cannot load {FONT_PATH} ({e}): using Bevy's built-in font instead");
        assets.font = None;
        cache.rebuild = true;
    }
    if let Some(icon) = &assets.icon
        && let Some(LoadState::Failed(e)) = server.get_load_state(icon)
    {
        eprintln!("lobby: cannot load {ICON_PATH} ({e}): starting without the icon");
        assets.icon = None;
        cache.rebuild = true;
    }
}
