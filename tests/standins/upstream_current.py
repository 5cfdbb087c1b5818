"""A stand-in for upstream glm-4-9b-chat's current ``tokenization_chatglm.py`` (written for these tests).

It reproduces the upstream behaviour our fix targets, not upstream's code:

* ``build_inputs_with_special_tokens`` always prepends ``[gMASK]<sop>``, so a
  rendered chat template gets the prefix twice (mask 1 on both copies);
* pairs look up a token ``<eos>`` that does not exist (``KeyError``);
* ``_pad`` takes ``padding_side`` but ignores it and always pads left; it
  ignores ``return_attention_mask`` and pads neither ``special_tokens_mask``
  nor ``token_type_ids``;
* ``convert_tokens_to_string`` drops str tokens and repeats the bytes before
  them, which shows on transformers 5 where ``decode`` sends special tokens
  through it;
* an id outside the vocabulary decodes to ``''``.
"""

import base64
import os

import tiktoken
from transformers import PreTrainedTokenizer
from transformers.utils import PaddingStrategy

SPECIAL = (
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
    "<|end_of_video|>",
)  # fmt: skip
PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


class ChatGLM4Tokenizer(PreTrainedTokenizer):
    vocab_files_names = {"vocab_file": "tokenizer.model"}
    model_input_names = ["input_ids", "attention_mask", "position_ids"]

    def __init__(self, vocab_file, clean_up_tokenization_spaces=False, **kwargs):
        self.name = "GLM4Tokenizer"
        self.vocab_file = vocab_file
        ranks = {}
        with open(vocab_file, "rb") as handle:
            for line in handle:
                if line.strip():
                    token, rank = line.split()
                    ranks[base64.b64decode(token)] = int(rank)
        self.mergeable_ranks = ranks
        # as upstream: the 14 tokens are tiktoken special tokens too (ids right after the ranks), and
        # _tokenize encodes with disallowed_special=() -- the same Rust path and cost as upstream's
        self.special_tokens = {token: len(ranks) + i for i, token in enumerate(SPECIAL)}
        self.tokenizer = tiktoken.Encoding(
            name="standin", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens=self.special_tokens
        )
        self.decoder = {rank: token for token, rank in ranks.items()}
        self.n_words = len(self.decoder)
        super().__init__(clean_up_tokenization_spaces=clean_up_tokenization_spaces, **kwargs)

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
            if isinstance(token, int):
                token = chr(token)
            if isinstance(token, str):
                if pending:  # flushes the bytes but neither resets them nor keeps the str token
                    text += pending.decode("utf-8", errors="replace")
            elif isinstance(token, bytes):
                pending += token
            else:
                raise TypeError("token should only be of type int, bytes or str")
        if pending:
            text += pending.decode("utf-8", errors="replace")
        return text

    def _tokenize(self, text, **kwargs):
        tokens = []
        for i in self.tokenizer.encode(text, disallowed_special=()):
            tokens.append(self.decoder[i])
        return tokens

    def _convert_token_to_id(self, token):
        if token in self.special_tokens:
            return self.special_tokens[token]
        return self.mergeable_ranks[token]

    def _convert_id_to_token(self, index):
        return self.decoder.get(index, "")

    def save_vocabulary(self, save_directory, filename_prefix=None):
        target = os.path.join(save_directory, "tokenizer.model") if os.path.isdir(save_directory) else save_directory
        with open(self.vocab_file, "rb") as src, open(target, "wb") as dst:
            dst.write(src.read())
        return (target,)

    def get_prefix_tokens(self):
        return [self.convert_tokens_to_ids("[gMASK]"), self.convert_tokens_to_ids("<sop>")]

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        token_ids_0 = self.get_prefix_tokens() + token_ids_0
        if token_ids_1 is not None:
            token_ids_0 = token_ids_0 + token_ids_1 + [self.convert_tokens_to_ids("<eos>")]
        return token_ids_0

    def _pad(
        self,
        encoded_inputs,
        max_length=None,
        padding_strategy=PaddingStrategy.DO_NOT_PAD,
        pad_to_multiple_of=None,
        return_attention_mask=None,
        padding_side="left",
    ):
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
