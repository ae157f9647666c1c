//! Chat prompts: the known templates, recognised in `tokenizer.chat_template` by distinctive
//! substrings (as llama.cpp does; no Jinja is evaluated) or chosen by name.
//!
//! The rendered text has no BOS: tokenizing it with special tokens on adds BOS where the
//! vocabulary asks for one, and parses `<|eot_id|>` and the other markers as control tokens.

use std::fmt;
use std::str::FromStr;

use crate::gguf::{GgufError, Metadata};

/// The metadata key that holds a model's Jinja chat template.
pub const CHAT_TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions for the assistant.
    System,
    /// The person chatting.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The lower-case role name (`system`, `user`, `assistant`).
    pub fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Its author.
    pub role: Role,
    /// Its text.
    pub content: String,
}

impl ChatMessage {
    /// A message of `role` with `content`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
        }
    }
}

/// A chat prompt format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatTemplate {
    /// BitNet b1.58 2B4T: `Role: content<|eot_id|>` per message, `Assistant: ` to reply.
    Bitnet,
    /// Llama 3: `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>` per message.
    Llama3,
}

/// Why no template could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatTemplateError {
    /// The file has no `tokenizer.chat_template`.
    #[error("the model has no `{CHAT_TEMPLATE_KEY}`: choose a template by name (bitnet, llama3)")]
    Missing,
    /// The file's template matches no known format.
    #[error(
        "unsupported chat template in `{CHAT_TEMPLATE_KEY}` (supported: bitnet, llama3); \
         it starts {start:?}"
    )]
    Unrecognised {
        /// The template's first characters.
        start: String,
    },
    /// A template name that is not known.
    #[error("unknown chat template `{0}` (supported: bitnet, llama3)")]
    UnknownName(String),
    /// `tokenizer.chat_template` is not a string.
    #[error("reading `{CHAT_TEMPLATE_KEY}`: {0}")]
    Metadata(String),
}

impl From<GgufError> for ChatTemplateError {
    fn from(e: GgufError) -> Self {
        ChatTemplateError::Metadata(e.to_string())
    }
}

/// Characters of an unrecognised template quoted in the error.
const QUOTED_CHARS: usize = 80;

impl ChatTemplate {
    /// The template's name, as [`FromStr`] accepts it.
    pub fn name(self) -> &'static str {
        match self {
            ChatTemplate::Bitnet => "bitnet",
            ChatTemplate::Llama3 => "llama3",
        }
    }

    /// Recognises a Jinja template by substrings only its format has.
    ///
    /// BitNet b1.58 2B4T is recognised in two forms: the template of its Hugging Face tokenizer
    /// (`'Assistant: '` with `<|eot_id|>`) and the `Human: … BITNETAssistant: ` placeholder its
    /// official GGUF conversion embeds. The model was trained on the former, so both render it.
    pub fn detect(jinja: &str) -> Result<Self, ChatTemplateError> {
        let has = |s: &str| jinja.contains(s);
        if has("<|start_header_id|>") && has("<|end_header_id|>") {
            Ok(ChatTemplate::Llama3)
        } else if has("BITNETAssistant") || (has("'Assistant: '") && has("<|eot_id|>")) {
            Ok(ChatTemplate::Bitnet)
        } else {
            Err(ChatTemplateError::Unrecognised {
                start: jinja.chars().take(QUOTED_CHARS).collect(),
            })
        }
    }

    /// The template named in a model's metadata.
    pub fn from_metadata(md: &Metadata) -> Result<Self, ChatTemplateError> {
        match md.get_opt_str(CHAT_TEMPLATE_KEY)? {
            Some(jinja) => Self::detect(jinja),
            None => Err(ChatTemplateError::Missing),
        }
    }

    /// Renders `messages`; `add_assistant` opens an assistant turn for the model to complete.
    /// Message contents are trimmed of surrounding ASCII whitespace, as llama.cpp does.
    pub fn apply(self, messages: &[ChatMessage], add_assistant: bool) -> String {
        let mut out = String::new();
        for m in messages {
            let content = trim(&m.content);
            match self {
                ChatTemplate::Bitnet => {
                    out += &format!("{}: {content}<|eot_id|>", capitalized(m.role));
                }
                ChatTemplate::Llama3 => {
                    out += &format!(
                        "<|start_header_id|>{}<|end_header_id|>\n\n{content}<|eot_id|>",
                        m.role.name()
                    );
                }
            }
        }
        if add_assistant {
            out += match self {
                ChatTemplate::Bitnet => "Assistant: ",
                ChatTemplate::Llama3 => "<|start_header_id|>assistant<|end_header_id|>\n\n",
            };
        }
        out
    }
}

impl fmt::Display for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ChatTemplate {
    type Err = ChatTemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bitnet" => Ok(ChatTemplate::Bitnet),
            "llama3" => Ok(ChatTemplate::Llama3),
            other => Err(ChatTemplateError::UnknownName(other.to_string())),
        }
    }
}

fn capitalized(role: Role) -> &'static str {
    match role {
        Role::System => "System",
        Role::User => "User",
        Role::Assistant => "Assistant",
    }
}

/// Strips what C's `isspace` calls whitespace from both ends.
fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b')
}
