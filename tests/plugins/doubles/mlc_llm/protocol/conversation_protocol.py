"""Test double of mlc_llm.protocol.conversation_protocol.Conversation (a chatml template).

Like the real one, ``as_prompt`` returns a list of prompt parts; here the system part and the
turns come as separate strings, so a count that took only the first part would be wrong.
"""

import copy


class Conversation:
    def __init__(
        self, *, name, system_template, system_message, roles, seps, system_prefix_token_ids=None
    ):
        self.name = name
        self.system_template = system_template
        self.system_message = system_message
        self.roles = roles
        self.seps = seps
        self.messages = []
        self.system_prefix_token_ids = system_prefix_token_ids

    @classmethod
    def chatml(cls):
        return cls(
            name="chatml",
            system_template="<|im_start|>system\n{system_message}<|im_end|>\n",
            system_message="You are a helpful assistant.",
            roles={"user": "<|im_start|>user", "assistant": "<|im_start|>assistant"},
            seps=["<|im_end|>\n"],
            system_prefix_token_ids=[1],  # a start token added after tokenisation
        )

    def model_copy(self, *, deep=False):
        return copy.deepcopy(self) if deep else copy.copy(self)

    def as_prompt(self, config=None):
        system = self.system_template.replace("{system_message}", self.system_message)
        turns = ""
        for role, content in self.messages:
            if content is None:
                turns += self.roles[role] + "\n"
            else:
                turns += self.roles[role] + "\n" + content + self.seps[0]
        return [system, turns]
