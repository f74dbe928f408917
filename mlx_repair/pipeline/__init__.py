"""The jobs the commands run, as library calls: `evaluate` (pipeline.evaluate), `mine`
(pipeline.mine) and the whole `train` job (pipeline.train), built on the stages they
share (pipeline.stages): the problems of one side, a run directory named after the
settings (so re-running resumes), the sandbox pool, the model writer and one loop stage."""
