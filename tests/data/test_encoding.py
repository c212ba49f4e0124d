"""Mojibake detection: GBK read as UTF-8 and UTF-8 read as cp1252 are named per line; real data is left alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glmtune.data.check import check_file
from glmtune.data.encoding import mojibake
from glmtune.data.formats.containers import iter_items
from glmtune.data.read import read_any

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.parametrize("text", [
    "café au lait", "Größe und Maß", "élève à l'école", "naïve résumé", "¿Qué tal? ¡Hola!", "10 °C ± 2",
    "привет мир", "Γειά σου κόσμε", "שלום עולם", "مرحبا بالعالم", "你好，世界", "猫", "è", "ˈhɛloʊ wɜːld",
    "Ça coûte 5 € — très cher", "Ärger über Öl",
])
def test_natural_text_is_not_flagged(text: str) -> None:
    assert mojibake(text) is None


@pytest.mark.parametrize(("bad", "good", "named"), [
    ("小猫".encode("gbk").decode("utf-8"), "小猫", "GBK read as UTF-8"),  # GBK bytes valid as UTF-8: 'Сè'
    ("说写".encode("gbk").decode("utf-8"), "说写", "GBK read as UTF-8"),
    ("猫".encode().decode("cp1252"), "猫", "UTF-8 that was read as cp1252"),  # 'çŒ«'
    ("你好世界".encode().decode("cp1252"), "你好世界", "UTF-8 that was read as cp1252"),
    ("café".encode().decode("latin-1"), "café", "UTF-8 that was read as cp1252/latin-1"),
])
def test_mis_decoded_text_names_the_encoding_and_the_real_text(bad: str, good: str, named: str) -> None:
    why = mojibake(bad)
    assert why is not None and repr(good) in why and named in why


def test_single_gbk_character_needs_evidence_from_the_same_file() -> None:
    one = "猫".encode("gbk").decode("utf-8")  # 'è': French on its own, GBK in a GBK file
    assert mojibake(one) is None
    assert "'猫'" in (mojibake(one, gbk_file=True) or "")


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared data not available")
@pytest.mark.parametrize("name", ["alpaca_zh_demo.json", "alpaca_en_demo.json", "glaive_toolcall_zh_demo.json",
                                  "glaive_toolcall_en_demo.json", "identity.json"])
def test_real_chinese_and_english_data_has_no_false_positive(name: str) -> None:
    items = list(iter_items(SHARED / name))
    assert len(items) > 50
    assert [i.source for i in items if i.error and i.error[0] == "mojibake"] == []


def test_gbk_file_is_quarantined_line_by_line_and_training_rejects_it(tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]}
            for u, a in (("猫", "cat"), ("小猫", "写"), ("你好，世界", "你好！"), ("hi", "hello"))]
    path = tmp_path / "gbk.jsonl"
    path.write_bytes(b"".join(json.dumps(r, ensure_ascii=False).encode("gbk") + b"\n" for r in rows))
    result = check_file(path)
    codes = {p.source.rsplit(":", 1)[1]: p.code for p in result.problems}
    assert codes == {"1": "mojibake", "2": "mojibake", "3": "bad_encoding"}  # line 1 only via line 3's evidence
    assert result.exit_code == 1 and len(result.kept) == 1
    bad = next(p for p in result.problems if p.code == "bad_encoding")
    assert "read as GBK" in bad.reason and "你好" in bad.reason
    # the training reader streams: line 2 is flagged on its own; line 1 ('è' alone) comes before the GBK
    # evidence of line 3, so only data check, which sees the whole file, quarantines it
    read = read_any(path)
    assert [c.messages[0]["content"] for c in read.conversations] == ["猫".encode("gbk").decode("utf-8"), "hi"]
    assert {p.source.rsplit(":", 1)[1]: p.code for p in read.problems} == {"2": "mojibake", "3": "bad_encoding"}
