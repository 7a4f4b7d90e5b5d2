"""Drop-in reward adapters for RL trainers, one module per trainer (``clients/README.md`` has
the table: how to plug each in, dense or scalar, what is lost).

==================  =========================================================  ======
module              what the trainer calls                                     reward
==================  =========================================================  ======
``verl``            ``await compute_score(data_source, solution_str, ...)``    scalar + per-type keys
``verl_manager``    ``FgrmDenseRewardManager`` (imports verl)                  dense
``slime``           ``await reward(args, sample)`` (``--custom-rm-path``)      scalar + per-type keys
``nemo_gym``        ``await FgrmVerifier(url).verify_fields(body)``            weighted components
``skyrl``           ``FgrmRewardGenerator`` / ``await dense_rewards(...)``     dense
``areal``           ``ArealReward(url)(prompt, completions, ids, ids, **kw)``  scalar, deadline
==================  =========================================================  ======

OpenRLHF needs no module: the service answers its ``--reward.remote_url`` protocol itself
(``POST /v1/openrlhf``), and TRL's is ``fgrm_client.trl``. Every adapter goes through the HTTP
client (bounded retries, deadlines, a concurrency cap, typed errors) and raises on a failed
call after an ERROR log line; none returns a made-up reward. Nothing here imports a trainer,
torch or transformers, except ``verl_manager``, which only verl loads.
"""
