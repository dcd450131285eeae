//! `pouch limit`: the running daemon's bandwidth limits, shown or changed
//! at once.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use pouch_config::{Config, parse_rate, show_rate};
use pouch_protocol::{Request, Response, request};

pub(super) async fn limit(
    config_path: &Path,
    settings: &[String],
    save: bool,
) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(config_path)?;
    let socket = config.socket_path();
    if settings.is_empty() {
        return match request(&socket, &Request::Status).await? {
            Some(Response::Status(status)) => {
                say!(
                    "up {}, down {}",
                    show_rate(status.limits.up),
                    show_rate(status.limits.down)
                );
                Ok(ExitCode::SUCCESS)
            }
            Some(_) => bail!("the daemon answered something else"),
            None => {
                say!(
                    "up {}, down {} (the config's; no daemon runs)",
                    show_rate(config.limits.up),
                    show_rate(config.limits.down)
                );
                Ok(ExitCode::SUCCESS)
            }
        };
    }
    let (mut up, mut down) = (None, None);
    let mut words = settings.iter();
    while let Some(direction) = words.next() {
        let Some(rate) = words.next() else {
            bail!("`{direction}` needs a rate after it, such as 2MiB or off");
        };
        let rate = parse_rate(rate).map_err(anyhow::Error::msg)?;
        match direction.as_str() {
            "up" => up = Some(rate),
            "down" => down = Some(rate),
            other => bail!("`{other}` is not a direction: write `up RATE` and/or `down RATE`"),
        }
    }
    if save {
        if let Some(up) = up {
            config.limits.up = up;
        }
        if let Some(down) = down {
            config.limits.down = down;
        }
        config.save(config_path)?;
    }
    let asked = Request::Limit {
        up: up.map(|rate| rate.unwrap_or(0)),
        down: down.map(|rate| rate.unwrap_or(0)),
    };
    match request(&socket, &asked).await? {
        Some(Response::Ok(now)) => {
            say!("{now}");
            Ok(ExitCode::SUCCESS)
        }
        Some(Response::Error(e)) => bail!("the daemon refused: {e}"),
        Some(Response::Status(_)) => bail!("the daemon answered something else"),
        None if save => {
            say!(
                "saved in {} (up {}, down {}); no daemon runs",
                config_path.display(),
                show_rate(config.limits.up),
                show_rate(config.limits.down)
            );
            Ok(ExitCode::SUCCESS)
        }
        None => bail!(
            "no daemon runs for {}; `--save` keeps the limits in the config for later runs, \
             and `pouch sync --limit-up RATE --limit-down RATE` limits one sync",
            config_path.display()
        ),
    }
}
