"""The MoE language model: args -> router -> experts -> MoE layer -> LM."""

from balance_lab.model.args import ModelArgs
from balance_lab.model.lm import LMOutput, MoELM
from balance_lab.model.params import ParamCounts, count_params

__all__ = ["ModelArgs", "MoELM", "LMOutput", "ParamCounts", "count_params"]
