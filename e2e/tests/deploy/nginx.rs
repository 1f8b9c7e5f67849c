//! The nginx gateway's configuration: a small tokenizer and parser, its servers and proxies.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value as Yaml;

use crate::repo::read;

#[derive(Debug, Clone)]
pub(crate) struct Directive {
    pub(crate) name: String,
    pub(crate) args: Vec<String>,
    pub(crate) block: Vec<Directive>,
}

pub(crate) fn nginx_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars();
    let mut word = String::new();
    let flush = |word: &mut String, tokens: &mut Vec<String>| {
        if !word.is_empty() {
            tokens.push(std::mem::take(word));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                flush(&mut word, &mut tokens);
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '\'' | '"' => {
                flush(&mut word, &mut tokens);
                let mut quoted = String::new();
                while let Some(q) = chars.next() {
                    if q == '\\' {
                        if let Some(escaped) = chars.next() {
                            quoted.push(escaped);
                        }
                    } else if q == c {
                        break;
                    } else {
                        quoted.push(q);
                    }
                }
                tokens.push(quoted);
            }
            '{' | '}' | ';' => {
                flush(&mut word, &mut tokens);
                tokens.push(c.to_string());
            }
            c if c.is_whitespace() => flush(&mut word, &mut tokens),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut tokens);
    tokens
}

pub(crate) fn nginx_parse(tokens: &[String], at: &mut usize) -> Vec<Directive> {
    let mut directives = Vec::new();
    let mut words: Vec<String> = Vec::new();
    while *at < tokens.len() {
        let token = tokens[*at].clone();
        *at += 1;
        match token.as_str() {
            ";" => {
                if !words.is_empty() {
                    let name = words.remove(0);
                    directives.push(Directive {
                        name,
                        args: std::mem::take(&mut words),
                        block: Vec::new(),
                    });
                }
            }
            "{" => {
                let block = nginx_parse(tokens, at);
                let name = if words.is_empty() {
                    String::new()
                } else {
                    words.remove(0)
                };
                directives.push(Directive {
                    name,
                    args: std::mem::take(&mut words),
                    block,
                });
            }
            "}" => return directives,
            _ => words.push(token),
        }
    }
    directives
}

/// The gateway's configuration file, found through the gateway's bind mount into /etc/nginx.
pub(crate) fn gateway_config(services: &BTreeMap<String, Yaml>) -> (String, Vec<Directive>) {
    let gateway = services
        .get("gateway")
        .expect("docker-compose.yml has a `gateway` service");
    let file = bind_mounts(gateway)
        .into_iter()
        .find(|(_, target)| target.starts_with("/etc/nginx/"))
        .map(|(source, _)| source.trim_start_matches("./").to_owned())
        .expect("the gateway mounts its configuration under /etc/nginx/");
    let text = read(&file);
    let tokens = nginx_tokens(&text);
    let mut at = 0;
    (file, nginx_parse(&tokens, &mut at))
}

/// The `server` blocks of a configuration, whether it is a whole nginx.conf or a conf.d file.
pub(crate) fn nginx_servers(config: &[Directive]) -> Vec<&Directive> {
    let mut servers = Vec::new();
    for directive in config {
        match directive.name.as_str() {
            "server" if !directive.block.is_empty() => servers.push(directive),
            "http" => servers.extend(nginx_servers(&directive.block)),
            _ => {}
        }
    }
    servers
}

pub(crate) fn nginx_all<'a>(config: &'a [Directive], name: &str, out: &mut Vec<&'a Directive>) {
    for directive in config {
        if directive.name == name {
            out.push(directive);
        }
        nginx_all(&directive.block, name, out);
    }
}

/// Which compose services a `proxy_pass` URL can reach: through an upstream block, a `map` of
/// upstream names (per key of the map), or directly.
pub(crate) fn proxy_targets(config: &[Directive], url: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut upstreams: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut found = Vec::new();
    nginx_all(config, "upstream", &mut found);
    for upstream in found {
        let servers = upstream
            .block
            .iter()
            .filter(|d| d.name == "server")
            .filter_map(|d| d.args.first().cloned())
            .collect();
        if let Some(name) = upstream.args.first() {
            upstreams.insert(name.clone(), servers);
        }
    }
    let hosts = |name: &str| -> BTreeSet<String> {
        upstreams.get(name).map_or_else(
            || std::iter::once(name.to_owned()).collect(),
            |servers| servers.iter().cloned().collect(),
        )
    };
    let authority = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let mut targets = BTreeMap::new();
    if let Some(variable) = authority.strip_prefix('$') {
        let mut maps = Vec::new();
        nginx_all(config, "map", &mut maps);
        for map in maps {
            if map.args.get(1) == Some(&format!("${variable}")) {
                for entry in &map.block {
                    if let Some(value) = entry.args.first() {
                        targets.insert(entry.name.clone(), hosts(value));
                    }
                }
            }
        }
    } else {
        targets.insert("*".to_owned(), hosts(authority));
    }
    targets
}

/// `./host/path:/container/path[:ro]` mounts (short and long syntax) of a service.
pub(crate) fn bind_mounts(service: &Yaml) -> Vec<(String, String)> {
    let Some(volumes) = service.get("volumes").and_then(Yaml::as_sequence) else {
        return Vec::new();
    };
    volumes
        .iter()
        .filter_map(|volume| match volume {
            Yaml::String(s) => {
                let mut parts = s.splitn(3, ':');
                Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
            }
            Yaml::Mapping(_) => Some((
                volume.get("source")?.as_str()?.to_owned(),
                volume.get("target")?.as_str()?.to_owned(),
            )),
            _ => None,
        })
        .collect()
}

pub(crate) fn is_host_path(source: &str) -> bool {
    source.starts_with('.') || source.starts_with('/') || source.starts_with('~')
}
