"""Admin forms that speak the config file: a kind's declared keys (core.spec.Key) as typed form fields.

The fields only turn what was typed into the value a TOML file would hold ("5" → 5, lines → a list); the
kind's `validate_settings`, the one importconfig calls, decides, and its ConfigError lands on the field it
names with the same words. The assembled dict is what the row stores as `settings`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, ClassVar

import tomli_w
from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import ProhibitNullCharactersValidator
from django.db import models
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from core.registry import Registry
from core.spec import INT_MAX, ConfigError, Key, validate

WHERE = "settings"
LIST_TYPES = ("list[str]", "argv", "list[int]")
_INT = re.compile(r"[+-]?\d+")
_LINE_HELP = {
    "list[str]": "One item per line.",
    "list[int]": "One integer per line.",
    "argv": "One argument per line (an argv, never a shell string).",
    "dict[str]": "One KEY=value per line.",
    "scalar": 'true, false, a number or text; quote text that reads as a number or true/false ("42").',
}


def toml_value(value: Any) -> str:
    """A value as the config file writes it (true, "GET", ["a", "b"], {})."""
    if isinstance(value, dict) and not value:
        return "{}"
    return tomli_w.dumps({"v": value}).strip().removeprefix("v = ")


def _number(text: str) -> Any:
    """A number as TOML reads it: `5` an integer, `5.0` a float; anything else stays text for the schema."""
    if _INT.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _bound(n: float | None) -> str:
    return str(int(n)) if n is not None and float(n).is_integer() else f"{n}"


def _norm(text: Any) -> str:
    # A browser posts a textarea's line breaks as CRLF: a value shown and posted back unchanged is unchanged.
    return "" if text is None else str(text).replace("\r\n", "\n").strip()


class KeyField(forms.CharField):
    """A text input for one Key; `to_python` gives the TOML value (None: the key is left out)."""

    def __init__(self, key: Key, **kwargs: Any) -> None:
        self.key = key
        super().__init__(required=False, strip=key.type not in ("text",), **kwargs)
        # The schema refuses a NUL with the words importconfig uses, not Django's.
        self.validators = [v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)]

    def has_changed(self, initial: Any, data: Any) -> bool:
        return _norm(initial) != _norm(data)

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if text in (None, ""):
            return None
        t = self.key.type
        if t in ("int", "number"):
            return _number(text.strip())
        if t in ("bool", "redirects"):
            return {"true": True, "false": False}.get(text, text)
        if t in LIST_TYPES:
            items = [line.strip() for line in text.splitlines() if line.strip()]
            return [_number(i) for i in items] if t == "list[int]" else items
        if t == "dict[str]":
            table: dict[str, str] = {}
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                name, eq, val = line.partition("=")
                if not eq:
                    raise ValidationError(f"line {n}: expected KEY=value", code="format")
                table[name.strip()] = val.strip()
            return table
        if t == "scalar":
            return _scalar(text.strip())
        return text


def _scalar(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    value = _number(text)
    return value if not isinstance(value, float) or math.isfinite(value) else text


def display(key: Key, value: Any) -> str:
    """What a field shows for a stored value: the text that `KeyField.to_python` reads back as it.

    A `${VAR}` reference is text like any other: shown as the reference, never expanded.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if key.type in LIST_TYPES and isinstance(value, list):
        return "\n".join(map(str, value))
    if key.type == "dict[str]" and isinstance(value, dict):
        return "\n".join(f"{k}={v}" for k, v in value.items())
    if key.type == "scalar" and isinstance(value, str) and _scalar(value) != value:
        return json.dumps(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def help_text(key: Key, lead: str = "") -> str:
    """The Key's help (or `lead`), its format, bounds and default, as the config file reference says them."""
    lead = lead or key.help
    parts = [lead.rstrip(".") + "." if lead else ""]
    parts.append(_LINE_HELP.get(key.type, ""))
    if key.minimum is not None or key.maximum is not None:
        low, high = key.minimum, key.maximum
        if high is None or high >= INT_MAX:
            parts.append(f"At least {_bound(low)}.")
        else:
            parts.append(f"From {_bound(low)} to {_bound(high)}.")
    if key.required:
        parts.append("Required.")
    elif key.default not in (None, "", [], {}):
        parts.append(f"Default: {toml_value(key.default)}.")
    return " ".join(p for p in parts if p)


def key_field(key: Key, label: str, lead: str = "") -> KeyField:
    """The form field of one Key: a select for a choice or a boolean, a textarea for lists and tables."""
    attrs: dict[str, Any] = {}
    if key.type in ("bool", "redirects") or key.choices:
        values = list(key.choices or ((True, False, "same-origin") if key.type == "redirects" else (True, False)))
        unset = f"— (default: {toml_value(key.default)})" if key.default is not None else "—"
        choices = [("", unset)] + [(display(key, v), display(key, v)) for v in values]
        # Not a ChoiceField: a value outside the choices reaches the schema, which says what importconfig says.
        attrs["widget"] = forms.Select(choices=choices)
    elif key.type in (*LIST_TYPES, "dict[str]", "text"):
        attrs["widget"] = forms.Textarea(attrs={"rows": 3, "cols": 60})
    else:
        attrs["widget"] = forms.TextInput(attrs={"size": 60 if key.type in ("str", "text") else 12})
    return KeyField(key, label=label, help_text=help_text(key, lead), **attrs)


class KindSettingsForm(forms.ModelForm):
    """A model form whose kind's keys are fields of their own, assembled into `settings` when valid.

    Subclasses are made by `kind_form()`: `kind` is the kind the fields are for ("" when none is chosen
    yet) and `field_keys` maps a form field's name to its key.
    """

    kind_registry: ClassVar[Registry[Any]]
    # The keys of the table's common columns (health.spec.SERVICE_KEYS): their help gets the bounds and
    # default, and a list column (evidence_log) is one item per line instead of JSON.
    common_keys: ClassVar[dict[str, Key]] = {}
    kind: ClassVar[str] = ""
    field_keys: ClassVar[dict[str, str]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.list_columns: list[str] = []
        for name, key in self.common_keys.items():
            field = self.fields.get(name)
            if field is None or name in ("name", "kind", "depends_on"):
                continue
            if key.type in LIST_TYPES and isinstance(field, forms.JSONField):
                self.fields[name] = key_field(key, str(field.label), lead=str(field.help_text or ""))
                self.initial[name] = display(key, self.initial.get(name))
                self.list_columns.append(name)
            else:
                field.help_text = help_text(key, str(field.help_text or ""))
        stored = self.instance.settings if self.instance.kind == self.kind else {}
        keys = self.kind_keys()
        for field, key in self.field_keys.items():
            self.initial[field] = display(keys[key], (stored or {}).get(key))
            if "\n" in self.initial[field] and isinstance(self.fields[field].widget, forms.TextInput):
                # An input would drop the line breaks of a value such as a tcp `send` of "QUIT\r\n".
                self.fields[field].widget = forms.Textarea(attrs={"rows": 2, "cols": 60})

    @classmethod
    def kind_keys(cls) -> dict[str, Key]:
        return cls.kind_registry.get(cls.kind).all_keys() if cls.kind else {}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for name in self.list_columns:
            if name in cleaned:
                cleaned[name] = cleaned[name] or []
                try:
                    validate({name: self.common_keys[name]}, {name: cleaned[name]}, "")
                except ConfigError as exc:
                    self.add_error(name, exc.message)
        if not self.kind or any(f in self.errors for f in self.field_keys):
            return cleaned
        stored = (self.instance.settings or {}) if self.instance.kind == self.kind else {}
        settings: dict[str, Any] = {}
        for field, key in self.field_keys.items():
            if key in stored and not self[field]._has_changed():
                settings[key] = stored[key]  # shown and posted back unchanged: kept exactly as stored
            elif cleaned.get(field) is not None:
                settings[key] = cleaned[field]
        try:
            self.instance.settings = self.kind_registry.get(self.kind).validate_settings(settings, WHERE)
        except ConfigError as exc:
            self.add_error(*self._place(exc))
        return cleaned

    def _place(self, exc: ConfigError) -> tuple[str | None, str]:
        """The field a ConfigError names (`settings.url`, `settings.headers.Host`) and the message it shows."""
        path = exc.where.removeprefix(WHERE).removeprefix(".")
        key, _, rest = path.partition(".")
        fields = {k: f for f, k in self.field_keys.items()}
        if key in fields:
            return fields[key], f"{rest}: {exc.message}" if rest else exc.message
        # A rule over several keys ("needs exactly one of …"): the form's own error, named as the file would.
        return None, f"{path}: {exc.message}" if path else exc.message

    def _update_errors(self, errors: ValidationError) -> None:
        # The model's clean() checks `settings` again, a field this form shows as its keys: its error
        # (only when this form already refused the keys, or the kind changed) is the form's own.
        if hasattr(errors, "error_dict") and WHERE in errors.error_dict:
            moved = errors.error_dict.pop(WHERE)
            if not self.errors:
                self.add_error(None, moved)
            if not errors.error_dict:
                return
        super()._update_errors(errors)


def kind_form(base: type[KindSettingsForm], model: type[models.Model], kind: str | None) -> type[KindSettingsForm]:
    """A subclass of `base` with a typed field for each key of `kind` (no key fields for an unknown kind)."""
    registry = base.kind_registry
    kind = kind if kind and kind in registry else ""
    taken = {f.name for f in model._meta.get_fields()}
    attrs: dict[str, Any] = {"kind": kind, "field_keys": {}, "__module__": base.__module__}
    for key_name, key in (registry.get(kind).all_keys() if kind else {}).items():
        # A key named like a column (a kind's `timeout`) gets a field name of its own; its label stays the key.
        field = key_name if key_name not in taken else f"settings_{key_name}"
        attrs[field] = key_field(key, key_name)
        attrs["field_keys"][field] = key_name
    return type(f"{base.__name__}_{kind or 'none'}", (base,), attrs)


def kind_links(registry: Registry[Any], current: str) -> str:
    """Links that reload the add form with the keys of another kind (`?kind=tcp`)."""
    links = format_html_join(
        " · ",
        '<a href="?kind={}"{}>{}</a>',
        ((k, mark_safe(' aria-current="true"') if k == current else "", k) for k in registry.kinds()),
    )
    return format_html("The kind decides the keys below; choose it first: {}", links)


class KindAdminMixin:
    """For a ModelAdmin of a model with `kind` and `settings`: the form and the fieldset of the kind's keys.

    `kind_base` is the KindSettingsForm subclass; `kind_table` names the config file's table in help text.
    """

    kind_base: ClassVar[type[KindSettingsForm]]
    kind_table: ClassVar[str] = ""
    model: type[models.Model]

    def form_kind(self, request: HttpRequest, obj: Any) -> str:
        """The kind whose keys the form shows: the posted one, else the row's, else (adding) `?kind=`."""
        if request.method == "POST":
            return request.POST.get("kind", "")
        return obj.kind if obj is not None else request.GET.get("kind", "")

    def kind_form_class(self, request: HttpRequest, obj: Any) -> type[KindSettingsForm]:
        return kind_form(self.kind_base, self.model, self.form_kind(request, obj))

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs["form"] = self.kind_form_class(request, obj)
        return super().get_form(request, obj, change=change, **kwargs)  # type: ignore[misc]

    def kind_fieldsets(self, request: HttpRequest, obj: Any, common: list[str]) -> list[tuple[str | None, Any]]:
        """The common columns and the kind's keys; adding, the kind comes first, as it decides the fields."""
        form = self.kind_form_class(request, obj)
        keys = (f"{form.kind or 'Kind'} settings", {"fields": list(form.field_keys)})
        if obj is None or not form.kind:
            picker = {"fields": ["kind"], "description": kind_links(self.kind_base.kind_registry, form.kind)}
            rest = [name for name in common if name != "kind"]
            return [("Kind", picker), (None, {"fields": rest}), *([keys] if form.kind else [])]
        keys[1]["description"] = (
            f"Keys of kind {form.kind}, as in the config file's {self.kind_table} table "
            "(for another kind's keys: change the kind above and save)"
        )
        return [(None, {"fields": common}), keys]

    def config_fields(self, exclude: set[str]) -> list[str]:
        """Every configurable column in model order (a column added to the model shows up by itself)."""
        meta = self.model._meta
        fields = (*meta.concrete_fields, *meta.many_to_many)
        return [f.name for f in fields if f.editable and f.name not in exclude and f.name not in ("id", "settings")]
