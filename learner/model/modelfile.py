"""An Ollama ``Modelfile`` for an exported GGUF: ``FROM`` the model (or the base, with ``ADAPTER`` the
version's adapter), the chat format as a Go ``TEMPLATE``, and the end-of-turn ``stop``.

The template is read off the model's own chat template: it is rendered around marker strings for a
system, a user and an assistant message, and the text between the markers becomes the Go template's
fixed parts — so the Ollama model is asked in the layout memstream trained in.

>>> print(go_template({"system": ("<s>sys\\n", "</s>\\n"), "user": ("<s>user\\n", "</s>\\n"),
...                    "assistant": ("<s>assistant\\n", "</s>\\n")}, default_system="", generation="<s>assistant\\n"))
{{- if .System }}<s>sys
{{ .System }}</s>
{{ end }}
{{- range .Messages }}
{{- if eq .Role "user" }}<s>user
{{ .Content }}</s>
{{ else if eq .Role "assistant" }}<s>assistant
{{ .Content }}</s>
{{ end }}
{{- end }}<s>assistant
<BLANKLINE>
"""

from __future__ import annotations

from pathlib import Path

from learner.store.storage import atomic_write_bytes, give_default_mode

__all__ = ["chat_pieces", "go_template", "modelfile_text", "write_modelfile"]

_MARK = {"system": "\u2060SYS\u2060", "user": "\u2060USR\u2060", "assistant": "\u2060ASST\u2060"}


def chat_pieces(tokenizer) -> tuple[dict[str, tuple[str, str]], str, str] | None:
    """``({role: (before, after)}, default system turn, generation prompt)`` from a chat template, or None."""
    render = getattr(tokenizer, "render_chat", None)
    S, U, A = (_MARK[role] for role in ("system", "user", "assistant"))
    sys_msg, user_msg = {"role": "system", "content": S}, {"role": "user", "content": U}
    asked = render([sys_msg, user_msg], add_generation_prompt=False) if render else None
    if asked is None:
        return None
    generation = render([sys_msg, user_msg], add_generation_prompt=True)[len(asked):]
    answered = render([sys_msg, user_msg, {"role": "assistant", "content": A}], add_generation_prompt=False)
    user_tail = asked.split(U, 1)[1]
    assistant_head, assistant_tail = answered.split(U, 1)[1][len(user_tail):].split(A, 1)
    system_head, between = asked.split(U, 1)[0].split(S, 1)
    try:
        system_tail = render([sys_msg], add_generation_prompt=False).split(S, 1)[1]
    except Exception:  # a template that wants a user turn: the system turn ends as a user turn does
        system_tail = user_tail
    user_head = between[len(system_tail):] if between.startswith(system_tail) else between
    before_user = render([user_msg], add_generation_prompt=False).split(U, 1)[0]
    default_system = before_user[: len(before_user) - len(user_head)] if before_user.endswith(user_head) else ""
    pieces = {"system": (system_head, system_tail), "user": (user_head, user_tail),
              "assistant": (assistant_head, assistant_tail)}
    return pieces, default_system, generation


def go_template(pieces: dict[str, tuple[str, str]], default_system: str, generation: str) -> str:
    """The Go template Ollama renders a conversation with (see the module's example)."""
    (s0, s1), (u0, u1), (a0, a1) = pieces["system"], pieces["user"], pieces["assistant"]
    return ("{{- if .System }}" + s0 + "{{ .System }}" + s1 + "{{ else }}" + default_system + "{{ end }}\n"
            if default_system else "{{- if .System }}" + s0 + "{{ .System }}" + s1 + "{{ end }}\n") + (
        "{{- range .Messages }}\n"
        '{{- if eq .Role "user" }}' + u0 + "{{ .Content }}" + u1
        + '{{ else if eq .Role "assistant" }}' + a0 + "{{ .Content }}" + a1 + "{{ end }}\n"
        "{{- end }}" + generation)


def modelfile_text(model: str, adapter: str | None, tokenizer, stops: list[str]) -> str:
    """The Modelfile's text (``model`` and ``adapter`` as Ollama reads them: ``./NAME`` beside it, or absolute)."""
    lines = [f"FROM {model}"]
    if adapter is not None:
        lines.append(f"ADAPTER {adapter}")
    chat = chat_pieces(tokenizer)
    if chat is not None:
        lines.append('TEMPLATE """' + go_template(*chat) + '"""')
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    return "\n".join(lines) + "\n"


def write_modelfile(path: Path, model: Path, adapter: Path | None, tokenizer, stops: list[str]) -> str:
    """Write the Modelfile atomically beside the export; returns the ``ollama create`` line that loads it."""
    def shown(p: Path) -> str:  # a bare name would be a model of Ollama's library, not a file
        p = Path(p).resolve()
        return f"./{p.name}" if p.parent == Path(path).parent.resolve() else str(p)

    atomic_write_bytes(path, modelfile_text(shown(model), shown(adapter) if adapter else None, tokenizer,
                                            stops).encode())
    give_default_mode(path)
    return f"ollama create NAME -f {path}"
