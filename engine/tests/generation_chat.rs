//! Chat templates: exact renderings of fixed conversations and recognition of template texts.

use bitnet_engine::generation::{ChatMessage, ChatTemplate, ChatTemplateError, Role};
use bitnet_engine::gguf::{Metadata, Value};

fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::new(Role::System, "You are a helpful assistant."),
        ChatMessage::new(Role::User, "  Hello!\n"),
        ChatMessage::new(Role::Assistant, "Hi there."),
        ChatMessage::new(Role::User, "Who are you?"),
    ]
}

/// The Jinja template of BitNet b1.58 2B4T's Hugging Face tokenizer configuration.
const BITNET_HF: &str = "{% for message in messages %}{% set content = message['role'] | capitalize + ': '+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}";

/// The placeholder the official BitNet GGUF conversion embeds.
const BITNET_GGUF: &str = "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}{% if message['role'] == 'user' %}{{ 'Human: ' + message['content'] + '\\n\\nBITNETAssistant: ' + eos_token }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}";

/// Meta Llama 3 Instruct's template.
const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/// ChatML, which neither format uses.
const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

#[test]
fn bitnet_renders_role_colon_content_eot() {
    assert_eq!(
        ChatTemplate::Bitnet.apply(&conversation(), true),
        "System: You are a helpful assistant.<|eot_id|>User: Hello!<|eot_id|>\
         Assistant: Hi there.<|eot_id|>User: Who are you?<|eot_id|>Assistant: "
    );
    assert_eq!(
        ChatTemplate::Bitnet.apply(&conversation()[1..2], false),
        "User: Hello!<|eot_id|>"
    );
}

#[test]
fn llama3_renders_headers_and_eot() {
    assert_eq!(
        ChatTemplate::Llama3.apply(&conversation(), true),
        "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\nHi there.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nWho are you?<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
}

#[test]
fn templates_are_recognised_by_distinctive_substrings() {
    assert_eq!(ChatTemplate::detect(BITNET_HF), Ok(ChatTemplate::Bitnet));
    assert_eq!(ChatTemplate::detect(BITNET_GGUF), Ok(ChatTemplate::Bitnet));
    assert_eq!(ChatTemplate::detect(LLAMA3), Ok(ChatTemplate::Llama3));
    match ChatTemplate::detect(CHATML) {
        Err(ChatTemplateError::Unrecognised { start }) => {
            assert!(CHATML.starts_with(&start) && !start.is_empty())
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn templates_come_from_metadata_or_by_name() {
    let mut md = Metadata::default();
    assert_eq!(
        ChatTemplate::from_metadata(&md),
        Err(ChatTemplateError::Missing)
    );
    md.set("tokenizer.chat_template", Value::String(LLAMA3.into()));
    assert_eq!(ChatTemplate::from_metadata(&md), Ok(ChatTemplate::Llama3));
    md.set("tokenizer.chat_template", Value::U32(3));
    assert!(matches!(
        ChatTemplate::from_metadata(&md),
        Err(ChatTemplateError::Metadata(_))
    ));
    for t in [ChatTemplate::Bitnet, ChatTemplate::Llama3] {
        assert_eq!(t.name().parse(), Ok(t));
    }
    let err = "chatml".parse::<ChatTemplate>().unwrap_err();
    assert_eq!(err, ChatTemplateError::UnknownName("chatml".into()));
    assert!(err.to_string().contains("bitnet, llama3"), "{err}");
}
