//! The subcommands of `qtalk`, one module each, and their arguments.

pub(crate) mod args;
pub(crate) mod call;
pub(crate) mod check;
pub(crate) mod p2p;
pub(crate) mod serve;

use qtalk_cli::url;
use qtalk_cli::Failure;

pub(crate) fn parse_url(text: &str) -> Result<url::Target, Failure> {
    url::parse(text).map_err(|e| Failure::Usage(e.to_string()))
}
