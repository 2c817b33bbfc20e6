//! docs/deploy.md read: its cluster table and its ```sh blocks, each with the hosts its section
//! names.

use std::net::Ipv4Addr;

use super::{GUIDE, workspace};

/// A host of the guide's cluster table.
#[derive(Debug, Clone)]
pub struct GuideHost {
    /// `control`, `auction`, `cell-1`.
    pub name: String,
    /// Its address in the guide.
    pub address: Ipv4Addr,
    /// What it runs (the table's third column).
    pub runs: String,
}

/// Where a block runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Where {
    /// `(every host)`: on each host of the table, in its order.
    Every,
    /// `(on `NAME`)`.
    On(String),
}

/// One command of a block: its first line in the guide and its text, continuation lines joined.
#[derive(Debug, Clone)]
pub struct GuideCommand {
    /// 1-based line number in the guide.
    pub line: usize,
    /// The command.
    pub text: String,
}

/// One ```sh block.
#[derive(Debug, Clone)]
pub struct Block {
    /// The heading of its section.
    pub section: String,
    /// Where it runs.
    pub hosts: Where,
    /// Its commands, in order.
    pub commands: Vec<GuideCommand>,
}

/// The guide's cluster and its blocks.
#[derive(Debug, Clone)]
pub struct Guide {
    /// The cluster table's hosts, in order.
    pub hosts: Vec<GuideHost>,
    /// Every ```sh block, in order.
    pub blocks: Vec<Block>,
}

impl Guide {
    /// docs/deploy.md of this workspace.
    ///
    /// # Panics
    /// When it cannot be read or parsed.
    pub fn load() -> Guide {
        let path = workspace().join(GUIDE);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Guide::parse(&text).unwrap_or_else(|e| panic!("{GUIDE}: {e}"))
    }

    /// Reads the cluster table (the rows `| `name` | address | runs | ...` of the table headed
    /// `| host | address |`) and every ```sh block with the host its `## ` section names.
    pub fn parse(text: &str) -> Result<Guide, String> {
        let mut hosts = Vec::new();
        let mut blocks = Vec::new();
        let mut section = String::new();
        let mut in_hosts_table = false;
        let mut fence: Option<(String, usize, Vec<NumberedLine>)> = None;
        for (i, line) in text.lines().enumerate() {
            let number = i + 1;
            let trimmed = line.trim_start();
            if let Some((language, start, lines)) = &mut fence {
                if trimmed.starts_with("```") {
                    if language == "sh" {
                        let hosts_of = where_of(&section, &hosts).map_err(|e| format!("line {start}: {e}"))?;
                        blocks.push(Block {
                            section: section.clone(),
                            hosts: hosts_of,
                            commands: commands_of(lines).map_err(|e| format!("line {start}: {e}"))?,
                        });
                    }
                    fence = None;
                } else {
                    lines.push((number, line.to_owned()));
                }
                continue;
            }
            if let Some(language) = trimmed.strip_prefix("```") {
                let language = language.trim().to_owned();
                if matches!(language.as_str(), "" | "bash" | "shell" | "console" | "shell-session") {
                    return Err(format!(
                        "line {number}: a ```{language} block: commands go in ```sh blocks, which the walkthrough runs"
                    ));
                }
                fence = Some((language, number, Vec::new()));
                continue;
            }
            if let Some(heading) = line.strip_prefix("## ") {
                section = heading.trim().to_owned();
                continue;
            }
            // The table whose header is `| host | address | ...`.
            if !line.starts_with('|') {
                in_hosts_table = false;
            } else if line.starts_with("| host | address |") {
                in_hosts_table = true;
            }
            if in_hosts_table && let Some(row) = line.strip_prefix("| `") {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let name = cells[0].trim_end_matches('`').to_owned();
                let address = cells
                    .get(1)
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| format!("line {number}: no address in the cluster table's row for {name}"))?;
                let runs = cells.get(2).map(|r| (*r).to_owned()).unwrap_or_default();
                hosts.push(GuideHost { name, address, runs });
            }
        }
        if fence.is_some() {
            return Err("a fenced block is not closed".into());
        }
        if hosts.is_empty() {
            return Err("no hosts: no table headed `| host | address |`".into());
        }
        Ok(Guide { hosts, blocks })
    }

    /// The hosts' names, in the table's order.
    pub fn host_names(&self) -> Vec<&str> {
        self.hosts.iter().map(|h| h.name.as_str()).collect()
    }

    /// The hosts a block runs on.
    pub fn hosts_of(&self, block: &Block) -> Vec<String> {
        match &block.hosts {
            Where::Every => self.hosts.iter().map(|h| h.name.clone()).collect(),
            Where::On(name) => vec![name.clone()],
        }
    }

    /// The cells: the hosts whose row says they run `cell-rep`.
    pub fn cells(&self) -> Vec<&str> {
        self.hosts.iter().filter(|h| h.runs.contains("cell-rep")).map(|h| h.name.as_str()).collect()
    }
}

/// The hosts a section's heading names: `(every host)` or `(on `NAME`)`.
fn where_of(section: &str, hosts: &[GuideHost]) -> Result<Where, String> {
    if section.contains("(every host)") {
        return Ok(Where::Every);
    }
    let name = section
        .split_once("(on `")
        .and_then(|(_, rest)| rest.split_once("`)"))
        .map(|(name, _)| name)
        .ok_or_else(|| format!("a ```sh block in section {section:?}, whose heading names no host"))?;
    if !hosts.iter().any(|h| h.name == name) {
        return Err(format!("section {section:?} names host {name}, which is not in the cluster table"));
    }
    Ok(Where::On(name.to_owned()))
}

/// A line of the guide and its 1-based number.
type NumberedLine = (usize, String);

/// A block's commands: continuation lines joined, blank lines and comment lines left out.
fn commands_of(lines: &[NumberedLine]) -> Result<Vec<GuideCommand>, String> {
    let mut commands = Vec::new();
    let mut open: Option<GuideCommand> = None;
    for (number, line) in lines {
        let (text, continued) = match line.trim_end().strip_suffix('\\') {
            Some(text) => (text.trim(), true),
            None => (line.trim(), false),
        };
        match &mut open {
            Some(command) => {
                command.text.push(' ');
                command.text.push_str(text);
            }
            None if text.is_empty() || text.starts_with('#') => continue,
            None => open = Some(GuideCommand { line: *number, text: text.to_owned() }),
        }
        if !continued && let Some(command) = open.take() {
            commands.push(command);
        }
    }
    match open {
        Some(command) => Err(format!("the command of line {} ends in a continuation", command.line)),
        None => Ok(commands),
    }
}

#[cfg(test)]
mod tests {
    use super::super::classify::check_paths;
    use super::super::{Kind, classify, expected_answer};
    use super::*;

    /// What the walkthrough checks before it makes any host: without root, an untranslatable
    /// command of the guide fails here.
    #[test]
    fn every_command_of_the_guide_has_a_rule() {
        let guide = Guide::load();
        assert_eq!(guide.host_names(), ["control", "auction", "cell-1"]);
        assert_eq!(guide.cells(), ["cell-1"]);
        assert!(guide.blocks.len() >= 8, "the guide's blocks: {}", guide.blocks.len());
        for block in &guide.blocks {
            for command in &block.commands {
                let at = format!("{GUIDE}:{} `{}`", command.line, command.text);
                check_paths(&command.text).unwrap_or_else(|e| panic!("{at}: {e}"));
                let kind = classify(&command.text).unwrap_or_else(|| panic!("{at}: no rule covers it"));
                if kind == Kind::Readiness {
                    assert!(expected_answer(&command.text).is_some(), "{at}: no answer in its comment");
                }
            }
        }
    }
}
