"""A stand-in for GLM-4V-9B's ``tokenization_chatglm.py`` (written for these tests, from its published behaviour).

It reproduces what GLM-4V-9B's class does, not its code (the vocabulary handling is the same as
``upstream_current.py``'s):

* ``__init__`` takes ``image_size`` (GLM-4V-9B's config says 1120) and defaults ``padding_side`` to left;
* ``apply_chat_template`` is the class's own (it ignores any jinja ``chat_template``): each conversation is
  ``[gMASK]<sop>`` (with ``add_special_tokens``), then per message ``<|role|>{metadata}\\n`` and, when the
  message has an ``image``, ``<|begin_of_image|><|endoftext|><|end_of_image|>`` before the content (only one
  image per conversation), then ``<|assistant|>`` with ``add_generation_prompt``. ``tokenize=False`` gives the
  text without the image tokens. ``tokenize=True`` encodes the pieces with tiktoken directly and passes the
  id rows to ``batch_encode_plus(..., is_split_into_words=True, add_special_tokens=False)`` -- a method
  transformers 5 no longer has; with ``return_dict=True`` the transformed images come back, stacked, as
  ``images`` (resized to ``image_size`` x ``image_size`` with bicubic interpolation, to a tensor, normalized
  with CLIP's mean and std);
* ``build_inputs_with_special_tokens`` always prepends ``[gMASK]<sop>`` (the seed bug), pairs look up a token
  ``<eos>`` that does not exist;
* ``_pad`` asserts ``self.padding_side == "left"`` and ignores the ``padding_side`` it is given.

The four ``torchvision.transforms`` it uses come from torchvision when it imports. PyPI's torchvision wheels
fail to load on the pinned CPU torch of this project's environments, so otherwise a small stand-in of those
four transforms defined below is used: enough for a PIL image (when Pillow is installed) or a small tensor
(C x H x W, float in [0, 1] or uint8); torchvision's own give the same for a PIL image up to rounding. The
stand-in is part of this module (not a file of its own) because transformers 4.x copies only the files a
module imports directly into its modules cache.
"""

import base64
import os

import tiktoken
import torch
from transformers import PreTrainedTokenizer
from transformers.utils import PaddingStrategy

try:
    from torchvision import transforms
except ImportError:  # the stand-in of the four transforms (see the module docstring)

    class transforms:
        class InterpolationMode:
            BICUBIC = "bicubic"

        class Compose:
            def __init__(self, steps):
                self.steps = list(steps)

            def __call__(self, image):
                for step in self.steps:
                    image = step(image)
                return image

        class Resize:
            def __init__(self, size, interpolation="bicubic"):
                self.size, self.interpolation = tuple(size), interpolation

            def __call__(self, image):
                if isinstance(image, torch.Tensor):
                    batch = image.float().unsqueeze(0)
                    return torch.nn.functional.interpolate(batch, size=self.size, mode="bicubic", align_corners=False)[
                        0
                    ]
                return image.resize((self.size[1], self.size[0]), resample=3)  # a PIL image; 3 is BICUBIC

        class ToTensor:
            def __call__(self, image):
                if isinstance(image, torch.Tensor):
                    return image.float() / 255 if image.dtype == torch.uint8 else image.float()
                import numpy

                array = numpy.asarray(image.convert("RGB"), dtype=numpy.float32) / 255  # a PIL image
                return torch.from_numpy(array).permute(2, 0, 1).contiguous()

        class Normalize:
            def __init__(self, mean, std):
                self.mean = torch.tensor(mean).view(-1, 1, 1)
                self.std = torch.tensor(std).view(-1, 1, 1)

            def __call__(self, tensor):
                return (tensor - self.mean) / self.std


SPECIAL = (
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
    "<|end_of_video|>",
)  # fmt: skip
PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_TOKENS = ("<|begin_of_image|>", "<|endoftext|>", "<|end_of_image|>")


class ChatGLM4Tokenizer(PreTrainedTokenizer):
    vocab_files_names = {"vocab_file": "tokenizer.model"}
    model_input_names = ["input_ids", "attention_mask", "position_ids"]

    def __init__(self, vocab_file, padding_side="left", clean_up_tokenization_spaces=False,
                 encode_special_tokens=False, image_size=None, **kwargs):  # fmt: skip
        self.name = "GLM4Tokenizer"
        self.vocab_file = vocab_file
        self.encode_special_tokens = encode_special_tokens
        self.image_size = image_size
        ranks = {}
        with open(vocab_file, "rb") as handle:
            for line in handle:
                if line.strip():
                    token, rank = line.split()
                    ranks[base64.b64decode(token)] = int(rank)
        self.mergeable_ranks = ranks
        self.tokenizer = tiktoken.Encoding(name="standin-4v", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens={})
        self.decoder = {rank: token for token, rank in ranks.items()}
        self.n_words = len(self.decoder)
        super().__init__(padding_side=padding_side, clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                         **kwargs)  # fmt: skip

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
                if pending:
                    text += pending.decode("utf-8", errors="replace")
            elif isinstance(token, bytes):
                pending += token
            else:
                raise TypeError("token should only be of type int, bytes or str")
        if pending:
            text += pending.decode("utf-8", errors="replace")
        return text

    def _tokenize(self, text, **kwargs):
        return [self.decoder[i] for i in self.tokenizer.encode(text)]

    def _convert_token_to_id(self, token):
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

    def build_single_message(self, role, metadata, message, tokenize=True, message_prefix=None):
        assert role in ("system", "user", "assistant", "observation"), role
        if not tokenize:
            return f"<|{role}|>{metadata}\n{message}"
        head = [self.convert_tokens_to_ids(f"<|{role}|>")] + self.tokenizer.encode(
            f"{metadata}\n", disallowed_special=()
        )
        body = self.tokenizer.encode(message, disallowed_special=())
        return head + (list(message_prefix) if message_prefix is not None else []) + body

    def apply_chat_template(self, conversation, add_generation_prompt=False, tokenize=True, padding=False,
                            truncation=False, max_length=None, return_tensors=None, return_dict=False,
                            tokenizer_kwargs=None, add_special_tokens=True, **kwargs):  # fmt: skip
        if return_dict and not tokenize:
            raise ValueError("`return_dict=True` is incompatible with `tokenize=False`")
        transform = transforms.Compose([
            transforms.Resize((self.image_size, self.image_size), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            transforms.Normalize(CLIP_MEAN, CLIP_STD),
        ])  # fmt: skip

        def one(messages):
            out = self.get_prefix_tokens() if add_special_tokens else []
            text = "[gMASK]<sop>" if add_special_tokens else ""
            image = None
            for message in messages:
                if message.get("tools"):  # GLM-4V renders tools as a system message; the tests use none
                    raise NotImplementedError("the GLM-4V stand-in renders no tools")
                prefix = None
                if message.get("image") is not None:
                    assert image is None, "Multiple images are not supported"
                    image = transform(message["image"])
                    prefix = self.convert_tokens_to_ids(list(IMAGE_TOKENS))
                content = message.get("content") or ""
                if content or prefix:
                    piece = self.build_single_message(message["role"], message.get("metadata", ""), content,
                                                      tokenize=tokenize, message_prefix=prefix)  # fmt: skip
                    if tokenize:
                        out.extend(piece)
                    else:
                        text += piece
            if add_generation_prompt:
                if tokenize:
                    out.append(self.convert_tokens_to_ids("<|assistant|>"))
                else:
                    text += "<|assistant|>"
            return (out if tokenize else text), image

        if isinstance(conversation, list) and all(isinstance(m, dict) for m in conversation):
            results, batched = [one(conversation)], False
        elif isinstance(conversation, list) and all(isinstance(c, list) for c in conversation):
            results, batched = [one(c) for c in conversation], True
        else:
            raise ValueError("Invalid conversation format")
        rows = [r[0] for r in results]
        images = [r[1] for r in results]
        if not tokenize:
            return rows if batched else rows[0]
        output = self.batch_encode_plus(
            rows, padding=padding, truncation=truncation, max_length=max_length, return_tensors=return_tensors,
            is_split_into_words=True, add_special_tokens=False,
        )  # fmt: skip
        if not return_dict:
            return output["input_ids"]
        if any(image is not None for image in images):
            output["images"] = torch.stack(images)
        return output

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        token_ids_0 = self.get_prefix_tokens() + token_ids_0
        if token_ids_1 is not None:
            token_ids_0 = token_ids_0 + token_ids_1 + [self.convert_tokens_to_ids("<eos>")]
        return token_ids_0

    def _pad(self, encoded_inputs, max_length=None, padding_strategy=PaddingStrategy.DO_NOT_PAD,
             pad_to_multiple_of=None, padding_side=None, return_attention_mask=None):  # fmt: skip
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
