"""Builds the tokenizer fixtures under Tests/Fixtures/tokenizers/ and the token ids they must give.

Run with the pinned environment (requirements.txt, plus `protobuf`, through which transformers
reads spiece.model); CI only reads the committed output.

- clip-vocab-merges/: the real CLIP-L BPE (49408 tokens, from open-clip-torch's bundled
  bpe_simple_vocab_16e6.txt.gz) laid out as FLUX.1's tokenizer/ folder: vocab.json, merges.txt,
  tokenizer_config.json, special_tokens_map.json.
- clip-tokenizer-json/: the same tokenizer saved by transformers as tokenizer.json.
- t5-spiece/: a small sentencepiece Unigram model trained here the way T5's was set up
  (pad=0, eos=1, unk=2, no bos, nmt_nfkc, no byte fallback), as spiece.model.
- t5-tokenizer-json/: the same model converted by transformers to tokenizer.json.
- expected_ids.json: for every prompt, the ids transformers gives when called as diffusers'
  FluxPipeline calls it, at each max length.
"""

import gzip
import json
import random
import shutil
from pathlib import Path

import open_clip
import sentencepiece as spm
from transformers import CLIPTokenizer, T5TokenizerFast

OUT = Path(__file__).resolve().parent / "tokenizers"
CLIP_MAX_LENGTHS = [77, 16]
T5_MAX_LENGTHS = [256, 16]


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character table that CLIP's vocabulary is written in."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def write_clip_vocab_merges(folder: Path):
    bpe_path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    assert len(tokens) == 49408
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
    config = {
        "add_prefix_space": False,
        "added_tokens_decoder": {
            "49406": {"content": "<|startoftext|>", **special, "special": True},
            "49407": {"content": "<|endoftext|>", **special, "special": True},
        },
        "bos_token": "<|startoftext|>",
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "eos_token": "<|endoftext|>",
        "errors": "replace",
        "model_max_length": 77,
        "pad_token": "<|endoftext|>",
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": "<|endoftext|>",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    special_map = {
        "bos_token": {"content": "<|startoftext|>", **special},
        "eos_token": {"content": "<|endoftext|>", **special},
        "pad_token": "<|endoftext|>",
        "unk_token": {"content": "<|endoftext|>", **special},
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2))


def training_text():
    """About 100 KB of seeded multilingual sentences: real words plus invented ones built from each
    script's syllables, so that a 2000-piece vocabulary fills up; rare characters stay out of it."""
    rng = random.Random(1234)
    words = {
        "en": "a photo of the cat dog sitting on red blue green chair table under bright light with "
        "mountains river forest city night day portrait painting style detailed high quality".split(),
        "fr": "une photo du chat assis sur la chaise rouge à côté de la fenêtre très élégant été hiver "
        "garçon château forêt où déjà".split(),
        "de": "ein Foto der Katze auf dem grünen Stuhl über Straße schön Größe Mädchen Brücke weiß "
        "Häuser Bäume".split(),
        "ru": "фотография кошки на красном стуле рядом с окном зимой город ночь".split(),
        "ja": "猫 の 写真 赤い 椅子 に 座って いる 東京 夜景 山 川 桜".split(),
        "zh": "一只 猫 坐在 红色 椅子 上 的 照片 城市 夜晚 山水 画".split(),
    }
    syllables = {
        "en": "ka ri to mo na le si ba de fu gi ho ju ne pa qu st th sh ch er in on an ing ed".split(),
        "fr": "é è ê à ç eau ou oi an en on ille tion ré dé mé".split(),
        "de": "ä ö ü ß sch ch ei au eu ie ung keit".split(),
        "ru": "ка ро то мо на ле си ба де фу ги хо жу не па".split(),
        "ja": list("あいうえおかきくけこさしすせそたちつてとなにぬねのアイウエオカキクケコ"),
        "zh": list("山水火木金土日月人口手心中大小上下天地"),
    }
    lines = []
    for _ in range(2500):
        language = rng.choice(list(words))
        sentence = []
        for _ in range(rng.randint(4, 12)):
            if rng.random() < 0.5:
                sentence.append(rng.choice(words[language]))
            else:
                sentence.append("".join(rng.choice(syllables[language]) for _ in range(rng.randint(1, 4))))
        line = " ".join(sentence)
        if rng.random() < 0.3:
            line = line.capitalize() + rng.choice([".", "!", "?", ",", ";", ":"])
        if rng.random() < 0.2:
            line += " " + str(rng.randint(0, 100000))
        lines.append(line)
    return lines


def write_t5_spiece(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_text()),
        model_prefix=str(folder / "spiece"),
        model_type="unigram",
        vocab_size=2000,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        normalization_rule_name="nmt_nfkc",
        byte_fallback=False,
        character_coverage=0.995,
        minloglevel=2,
    )
    (folder / "spiece.vocab").unlink()


PROMPTS = [
    "",
    "a photo of a cat",
    "A PHOTO OF A CAT",
    "A Photo Of A Cat Sitting On A Red Chair",
    "a cat, a dog; and a horse!",
    "hello world",
    "  leading spaces",
    "trailing spaces   ",
    "   both   sides   ",
    "many     spaces     between     words",
    "tabs\tand\tnewlines\nin\r\nthe prompt",
    "\n\n\nnewlines only at the start",
    " ",
    "\t\n ",
    "it's a dog's life, isn't it? we're here, they've gone, I'm fine, you'll see, he'd go",
    "IT'S LOUD: DON'T SHOUT",
    "rock 'n' roll ''quoted'' 'single'",
    "numbers 1234567890 and 3.14159 and 1,000,000",
    "2024-06-01T12:34:56Z",
    "version v1.2.3-beta+build.5",
    "!!!???...,,,;;;:::",
    "a---b___c***d///e\\\\f",
    "price: $19.99 (50% off) #sale @store & more",
    "<html><body>hi</body></html>",
    "email@example.com https://example.org/path?q=1&r=2",
    "café crème brûlée à la carte",
    "naïve résumé façade coöperate",
    "Straße Größe Mädchen über",
    "ÀÉÎÕÜ àéîõü ÇÑ",
    "e\u0301 composed vs \u00e9 precomposed",
    "A\u030a ring and \u212b angstrom",
    "東京の夜景、美しい桜の写真",
    "一只猫坐在红色的椅子上",
    "한국어 문장입니다",
    "Привет, как дела? Фотография кошки",
    "Γειά σου κόσμε ΣΟΦΊΑ",
    "مرحبا بالعالم",
    "שלום עולם",
    "हिन्दी पाठ",
    "ภาษาไทย",
    "emoji 😀🎉🔥 party",
    "family 👨‍👩‍👧‍👦 and flags 🇩🇪🇫🇷",
    "skin tones 👍🏽👋🏿",
    "hearts ❤️💙💚 stars ⭐✨",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "ﬁne ﬂowers ligatures",
    "superscript x² y³ and fractions ½ ¾",
    "roman Ⅻ and circled ① ② ③",
    "non\u00a0breaking\u2003em\u2009thin spaces",
    "zero\u200bwidth\u200cjoiners\u200d",
    "soft\u00adhyphen and bom\ufeffhere",
    "control\u0007chars\u001bhere",
    "mixed CaSe WoRdS with MiXeD 123abc ABC123",
    "snake_case camelCase PascalCase kebab-case",
    "™ © ® § ¶ † ‡ • … ‰",
    "math ∑ ∫ √ ∞ ≠ ≤ ≥ ± × ÷",
    "arrows → ← ↑ ↓ ⇒ and box ─│┌┐",
    "currency € £ ¥ ₹ ₿",
    "unicode dash — and – and quotes “smart” ‘single’",
    "a",
    "A",
    "x" * 40,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "word " * 30,
    "a photo of " + "a very very very detailed " * 12 + "cat",
    ("A cinematic, highly detailed photograph of an old lighthouse on a rocky cliff at sunset, "
     "waves crashing below, seagulls circling overhead, warm golden light, dramatic clouds, "
     "8k resolution, shot on a 35mm lens, film grain, trending on artstation, masterpiece. ") * 4,
    ("Une photo très détaillée d'un château en hiver, 東京の夜景 и фотография кошки, "
     "with emoji 🎉 and numbers 12345. ") * 10,
    "猫" * 100,
    "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 " * 5,
    "<|startoftext|> inside text <|endoftext|> and </s> and <unk> and <pad>",
    "<|ENDOFTEXT|> upper-case special token, <extra_id_0> sentinel and <extra_id_99>",
    "\u2581already \u2581\u2581metaspace\u2581 characters\u2581",
    "＜pad＞ and ＜/s＞ in fullwidth brackets",
    "İstanbul ǅungla ǈ title-case and dotless ı",
    "stacked e\u0301\u0302\u0303\u0304 marks and a\u0308\u0308",
    "\u3000ideographic\u3000space\u0085next line\u2028line separator",
    "nul x\u0000y byte",
    "don't 'tis o'clock ’curly’ apostrophe's 'S 'T 'LL",
    "ℌ𝔢𝔩𝔩𝔬 math letters 𝟙𝟚𝟛 and ㍻ ㎏ ㌔",
    "decomposed hangul \u1112\u1161\u11ab\u1100\u1173\u11af",
    "q" * 300,
]


def compact_json(path: Path):
    """Rewrites a saved file without indentation: same content, a third of the size."""
    path.write_text(json.dumps(json.loads(path.read_text(encoding="utf-8")), ensure_ascii=False), encoding="utf-8")


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    clip_files = OUT / "clip-vocab-merges"
    clip_json = OUT / "clip-tokenizer-json"
    t5_spiece = OUT / "t5-spiece"
    t5_json = OUT / "t5-tokenizer-json"

    write_clip_vocab_merges(clip_files)
    CLIPTokenizer.from_pretrained(clip_files).save_pretrained(clip_json)
    for extra in ["vocab.json", "merges.txt"]:
        (clip_json / extra).unlink(missing_ok=True)
    compact_json(clip_json / "tokenizer.json")

    write_t5_spiece(t5_spiece)
    T5TokenizerFast.from_pretrained(t5_spiece).save_pretrained(t5_json)
    (t5_json / "spiece.model").unlink(missing_ok=True)
    compact_json(t5_json / "tokenizer.json")

    def ids(tokenizer, max_length):
        return [
            tokenizer(p, padding="max_length", max_length=max_length, truncation=True,
                      return_length=False, return_overflowing_tokens=False, return_tensors="pt")
            .input_ids[0].tolist()
            for p in PROMPTS
        ]

    def consistent(folders, tokenizer_class, max_length):
        results = [ids(tokenizer_class.from_pretrained(f), max_length) for f in folders]
        assert all(r == results[0] for r in results), f"{folders} disagree at {max_length}"
        return results[0]

    expected = {
        "prompts": PROMPTS,
        "clip": {str(n): consistent([clip_files, clip_json], CLIPTokenizer, n) for n in CLIP_MAX_LENGTHS},
        "t5": {str(n): consistent([t5_spiece, t5_json], T5TokenizerFast, n) for n in T5_MAX_LENGTHS},
    }
    (OUT / "expected_ids.json").write_text(json.dumps(expected, ensure_ascii=True))
    print(f"{len(PROMPTS)} prompts written to {OUT}")


if __name__ == "__main__":
    main()
