"""A stand-in for the mid-2024 revision of glm-4-9b-chat's ``tokenization_chatglm.py`` (written for these tests).

It reproduces that revision's behaviour, not its code:

* the 14 GLM-4 tokens live in a dict next to tiktoken's ranks and are looked
  up with ``get_command``, which asserts the token exists;
* ``build_inputs_with_special_tokens`` always prepends ``[gMASK]<sop>``;
  pairs ask ``get_command("<eos>")``, which fails its assertion;
* ``_pad`` has no ``padding_side`` parameter at all, so transformers >= 4.45
  (which passes ``padding_side=`` by keyword) raises ``TypeError`` on every
  padded call; it also asserts ``self.padding_side == "left"``.
"""

import base64
import os

import tiktoken
from transformers import PreTrainedTokenizer
from transformers.utils import PaddingStrategy

PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL = [
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
    "<|end_of_video|>",
]  # fmt: skip


class ChatGLM4Tokenizer(PreTrainedTokenizer):
    vocab_files_names = {"vocab_file": "tokenizer.model"}
    model_input_names = ["input_ids", "attention_mask", "position_ids"]

    def __init__(self, vocab_file, padding_side="left", clean_up_tokenization_spaces=False,
                 encode_special_tokens=False, **kwargs):  # fmt: skip
        self.name = "GLMTokenizer"
        self.vocab_file = vocab_file
        self.encode_special_tokens = encode_special_tokens
        ranks = {}
        with open(vocab_file, "rb") as handle:
            for line in handle:
                if line.strip():
                    token, rank = line.split()
                    ranks[base64.b64decode(token)] = int(rank)
        self.mergeable_ranks = ranks
        self.special_tokens = {t: i for i, t in enumerate(SPECIAL, start=len(ranks))}
        self.special_token_ids = {i: t for t, i in self.special_tokens.items()}
        self.tokenizer = tiktoken.Encoding(
            name="standin", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens=self.special_tokens
        )
        self.decoder = {rank: token for token, rank in ranks.items()}
        self.n_words = len(self.decoder) + len(self.special_tokens)
        super().__init__(padding_side=padding_side, clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                         **kwargs)  # fmt: skip

    def get_command(self, token):
        assert token in self.special_tokens
        return self.special_tokens[token]

    @property
    def vocab_size(self):
        return self.n_words

    def get_vocab(self):
        vocab = {self._convert_id_to_token(i): i for i in range(self.vocab_size)}
        vocab.update(self.added_tokens_encoder)
        return vocab

    def convert_tokens_to_string(self, tokens):
        text, pending = "", b""
        for token in tokens:
            if isinstance(token, str):
                if pending:
                    text += pending.decode("utf-8", errors="replace")
                    pending = b""
                text += token
            elif isinstance(token, bytes):
                pending += token
            else:
                raise TypeError("token should only be of type types or str")
        if pending:
            text += pending.decode("utf-8", errors="replace")
        return text

    def _tokenize(self, text, **kwargs):
        if self.encode_special_tokens:
            ids = self.tokenizer.encode(text, allowed_special="all")
        else:
            ids = self.tokenizer.encode(text, disallowed_special=())
        return [self.decoder[i] for i in ids]

    def _convert_token_to_id(self, token):
        if token in self.special_tokens:
            return self.special_tokens[token]
        return self.mergeable_ranks[token]

    def _convert_id_to_token(self, index):
        if index in self.special_token_ids:
            return self.special_token_ids[index]
        return self.decoder[index]

    def save_vocabulary(self, save_directory, filename_prefix=None):
        target = os.path.join(save_directory, "tokenizer.model") if os.path.isdir(save_directory) else save_directory
        with open(self.vocab_file, "rb") as src, open(target, "wb") as dst:
            dst.write(src.read())
        return (target,)

    def get_prefix_tokens(self):
        return [self.get_command("[gMASK]"), self.get_command("<sop>")]

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        token_ids_0 = self.get_prefix_tokens() + token_ids_0
        if token_ids_1 is not None:
            token_ids_0 = token_ids_0 + token_ids_1 + [self.get_command("<eos>")]
        return token_ids_0

    def _pad(self, encoded_inputs, max_length=None, padding_strategy=PaddingStrategy.DO_NOT_PAD,
             pad_to_multiple_of=None, return_attention_mask=None):  # fmt: skip
        assert self.padding_side == "left"
        required_input = encoded_inputs[self.model_input_names[0]]
        seq_length = len(required_input)
        if padding_strategy == PaddingStrategy.LONGEST:
            max_length = len(required_input)
        if max_length is not None and pad_to_multiple_of is not None and (max_length % pad_to_multiple_of != 0):
            max_length = ((max_length // pad_to_multiple_of) + 1) * pad_to_multiple_of
        needs_padding = padding_strategy != PaddingStrategy.DO_NOT_PAD and len(required_input) != max_length
        if "attention_mask" not in encoded_inputs:
            encoded_inputs["attention_mask"] = [1] * seq_length
        if "position_ids" not in encoded_inputs:
            encoded_inputs["position_ids"] = list(range(seq_length))
        if needs_padding:
            difference = max_length - len(required_input)
            encoded_inputs["attention_mask"] = [0] * difference + encoded_inputs["attention_mask"]
            encoded_inputs["position_ids"] = [0] * difference + encoded_inputs["position_ids"]
            encoded_inputs[self.model_input_names[0]] = [self.pad_token_id] * difference + required_input
        return encoded_inputs
