"""Tasks and their data: `base` (Sample, Task, prompts), `budget`, `images`, `draw`, one module per dataset family
(`fgvc`, `sat`, `banner`: the real benchmark and its synthetic stand-in) and the `registry` of `task=` options."""
