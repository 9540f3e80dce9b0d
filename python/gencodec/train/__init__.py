"""Training code: rate-perception fine-tuning of preprocessing models through codec
surrogates (:mod:`.rp`), one-step CiD distillation (:mod:`.distill`), OSDiff training
(:mod:`.osdiff`), with their shared machinery (seeding, checkpoints, logs, DDP) in
:mod:`.common`."""
