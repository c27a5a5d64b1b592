//! Command-line arguments.

use clap::{Args, Parser, Subcommand};
use std::{net::SocketAddr, path::PathBuf};

/// flock: a decentralized AI training network on a FLOCK-token ledger.
#[derive(Debug, Parser)]
#[command(name = "flockd", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Log filter (e.g. `info`, `flock_node=debug`); also `RUST_LOG`.
    #[arg(long, global = true, env = "FLOCK_LOG", default_value = "info")]
    pub log: String,
    /// Logs as JSON lines.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a whole local network: a node with funded dev accounts and a demo workload.
    Devnet(DevnetArgs),
    /// Run a node.
    Node(NodeArgs),
    /// Create a genesis file and a sequencer key.
    Genesis(GenesisArgs),
    /// Manage keys in the keystore.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Sign and send a transaction.
    Tx(TxArgs),
    /// Read chain state.
    #[command(subcommand)]
    Query(QueryCmd),
    /// Run an agent (AI Arena creator, trainer or validator) against a node.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Models: create a tiny model and task data.
    #[command(subcommand)]
    Model(ModelCmd),
    /// AI Marketplace: listings, credits, API keys, usage, feedback.
    Market(MarketArgs),
    /// Run a BFT network of validators on loopback (separate processes and data dirs).
    #[cfg(feature = "bft")]
    Testnet(TestnetArgs),
}

/// `flockd testnet`.
#[cfg(feature = "bft")]
#[derive(Debug, Args)]
pub(crate) struct TestnetArgs {
    /// Validators.
    #[arg(long, default_value_t = 4)]
    pub nodes: u32,
    /// Directory of the network (genesis, committee, one data dir per node); reused if it
    /// already holds one.
    #[arg(long)]
    pub dir: PathBuf,
    /// First HTTP API port (node i listens on BASE+i; its p2p port is BASE+100+i).
    #[arg(long, default_value_t = 7600)]
    pub base_port: u16,
    /// Chain id of a new network.
    #[arg(long, default_value = "flock-testnet")]
    pub chain_id: String,
    /// Write the network's files and exit without starting it.
    #[arg(long)]
    pub init_only: bool,
    /// Once the network runs, play the devnet's AI Arena round on it (agents spread over the
    /// nodes) and check that every node holds the same result.
    #[arg(long)]
    pub arena: bool,
    /// With --arena: the quick variant (smaller corpus, fewer steps).
    #[arg(long)]
    pub quick: bool,
    /// With --arena: stop the network after the round (exit status: whether it passed).
    #[arg(long)]
    pub exit_after_arena: bool,
    /// Blocks per epoch of a new network (emission, validator sets, and a resharing of the
    /// committee's threshold key each); default: the ledger's.
    #[arg(long)]
    pub epoch_length: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct MarketArgs {
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub node: NodeUrl,
    #[command(subcommand)]
    pub cmd: MarketCmd,
}

#[derive(Debug, Subcommand)]
pub(crate) enum MarketCmd {
    /// List the models on offer (price, split, provenance, rating, volume).
    List,
    /// List a model: its artifact (a bundle in the artifact store), price and revenue split.
    Publish {
        /// The owner's key.
        #[arg(long)]
        from: String,
        /// Listing name (1-64 of a-z 0-9 . _ -).
        #[arg(long)]
        name: String,
        /// The model's artifact hash.
        #[arg(long)]
        artifact: String,
        /// The serving node's account (key name or address) allowed to settle usage.
        #[arg(long)]
        server: String,
        /// `language` or `predict`.
        #[arg(long, default_value = "language")]
        kind: String,
        /// Price per 1,000 tokens, e.g. "0.5 FLOCK".
        #[arg(long, default_value = "0 FLOCK")]
        per_1k_tokens: String,
        /// Price per call.
        #[arg(long, default_value = "0 FLOCK")]
        per_call: String,
        /// Revenue split owner/validators/burn in percent, e.g. 80/15/5.
        #[arg(long, default_value = "80/15/5")]
        split: String,
        /// Provenance: `arena:TASK:ROUND` or `alliance:TASK:ROUND` (checked by the ledger).
        #[arg(long)]
        provenance: Option<String>,
    },
    /// Move FLOCK from the balance into the credit escrow that pays for usage.
    Deposit {
        /// The consumer's key.
        #[arg(long)]
        from: String,
        /// Amount, e.g. "10 FLOCK".
        amount: String,
    },
    /// Start withdrawing credit (released to the balance after the ledger's delay).
    Withdraw {
        /// The consumer's key.
        #[arg(long)]
        from: String,
        /// Amount.
        amount: String,
    },
    /// API keys: create (printed once; only its hash goes on the ledger) or revoke.
    #[command(subcommand)]
    Keys(MarketKeysCmd),
    /// An account's credit, keys and spending per listing.
    Usage {
        /// Key name or address.
        who: String,
    },
    /// Rate a model you have paid for (1-5 stars), on the ledger.
    Rate {
        /// Your key.
        #[arg(long)]
        from: String,
        /// Listing.
        listing: String,
        /// Stars.
        stars: u8,
    },
    /// Write the feedback this node collected for a model as FLock JSONL training data.
    ExportFeedback {
        /// Listing.
        #[arg(long)]
        model: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// The serving node's data directory (default: `<data-dir>/node`).
        #[arg(long)]
        node_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum MarketKeysCmd {
    /// Create an API key bound to an account.
    Create {
        /// The account's key.
        #[arg(long)]
        from: String,
        /// A label.
        #[arg(long, default_value = "default")]
        label: String,
    },
    /// Revoke an API key (by the key itself or its hash).
    Revoke {
        /// The account's key.
        #[arg(long)]
        from: String,
        /// The API key or its hash.
        key: String,
    },
}

/// Options every agent has.
#[derive(Debug, Clone, Args)]
pub(crate) struct AgentCommon {
    /// The agent's key name (or address) in the keystore.
    #[arg(long)]
    pub from: String,
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub node: NodeUrl,
    /// Working directory for downloads and models (default: `<data-dir>/agents/<key>`).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AgentCmd {
    /// Open an AI Arena task and reveal its validation set when submissions close.
    Creator {
        #[command(flatten)]
        common: AgentCommon,
        /// Base model directory (config.json, model.safetensors, tokenizer.json).
        #[arg(long)]
        base_model: PathBuf,
        /// Training set (FLock JSONL).
        #[arg(long)]
        train: PathBuf,
        /// Hidden validation set (FLock JSONL), revealed after submissions close.
        #[arg(long)]
        validation: PathBuf,
        /// Task title.
        #[arg(long, default_value = "Text2SQL")]
        title: String,
        /// Deposit added to the reward pool.
        #[arg(long, default_value = "1000")]
        deposit: String,
        /// Train-phase length in blocks.
        #[arg(long, default_value_t = 240)]
        train_blocks: u64,
        /// Validate-phase length in blocks.
        #[arg(long, default_value_t = 120)]
        validate_blocks: u64,
        /// Validators per submission.
        #[arg(long, default_value_t = 3)]
        validators: u16,
    },
    /// Fine-tune the task's base model with LoRA, submit, commit and reveal.
    Trainer {
        #[command(flatten)]
        common: AgentCommon,
        /// Task id.
        #[arg(long)]
        task: u64,
        /// Round.
        #[arg(long, default_value_t = 0)]
        round: u32,
        /// Stake this much first if not staked yet.
        #[arg(long)]
        stake: Option<String>,
        /// Percent of the training set used.
        #[arg(long, default_value_t = 100)]
        data_percent: u32,
        /// Training steps.
        #[arg(long, default_value_t = 150)]
        steps: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Take part in an FL Alliance task: join with a stake, then every round train on the local
    /// data when drawn proposer, or aggregate, evaluate on the local data and vote when drawn
    /// voter. The data never leaves this machine; only updates and votes are posted.
    FlMember {
        #[command(flatten)]
        common: AgentCommon,
        /// Task id.
        #[arg(long)]
        task: u64,
        /// Local training data: CSV with a header, numeric feature columns and a label column.
        #[arg(long)]
        data: PathBuf,
        /// Local validation data for voting (default: the training data).
        #[arg(long)]
        val: Option<PathBuf>,
        /// Name of the label column.
        #[arg(long, default_value = "label")]
        label: String,
        /// The model is a classifier with this many classes (default: a regressor).
        #[arg(long)]
        classes: Option<usize>,
        /// Join with this stake if not a member yet (e.g. "1000 FLOCK").
        #[arg(long)]
        stake: Option<String>,
        /// Local epochs per round as proposer.
        #[arg(long, default_value_t = 2)]
        epochs: usize,
        /// Learning rate of local training.
        #[arg(long, default_value_t = 3e-3)]
        lr: f64,
    },
    /// Score assigned submissions on the revealed validation set, commit and reveal.
    Validator {
        #[command(flatten)]
        common: AgentCommon,
        /// Task id.
        #[arg(long)]
        task: u64,
        /// Round.
        #[arg(long, default_value_t = 0)]
        round: u32,
        /// Stake this much first if not staked yet.
        #[arg(long)]
        stake: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ModelCmd {
    /// Write a tiny Qwen2-style model in HF layout (config.json, model.safetensors, a BPE
    /// tokenizer.json trained on the corpus), briefly pretrained, plus the simulated Text2SQL
    /// train.jsonl and validation.jsonl it is meant for.
    Init {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Training examples.
        #[arg(long, default_value_t = 600)]
        train: usize,
        /// Validation examples.
        #[arg(long, default_value_t = 64)]
        validation: usize,
        /// Pretraining steps.
        #[arg(long, default_value_t = 100)]
        pretrain_steps: usize,
    },
    /// Import a pretrained checkpoint into flock's model layout (config.json, model.safetensors,
    /// tokenizer.json, tokenizer_config.json with the chat template): a HF directory
    /// (Llama/Qwen2/Mistral family, F32/F16/BF16, sharded or not) or a llama.cpp GGUF file
    /// (needs a build with `--features gguf`). The result is loaded back as a check.
    Import {
        /// Source: a HF model directory or a `.gguf` file.
        src: PathBuf,
        /// Output directory (created; must be empty unless --force).
        #[arg(long)]
        out: PathBuf,
        /// Dtype of the stored weights: f32 (exact), f16 or bf16 (half the size).
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// Replace the model files of a non-empty output directory.
        #[arg(long)]
        force: bool,
    },
}

/// Where the data lives.
#[derive(Debug, Clone, Args)]
pub(crate) struct DataDir {
    /// Data directory (keystore, chain store).
    #[arg(long, env = "FLOCK_HOME", default_value_os_t = default_home())]
    pub data_dir: PathBuf,
}

fn default_home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".flock")
}

/// Which node to talk to.
#[derive(Debug, Clone, Args)]
pub(crate) struct NodeUrl {
    /// The node's API URL.
    #[arg(long = "node", env = "FLOCK_NODE", default_value = "http://127.0.0.1:7545")]
    pub url: String,
}

#[derive(Debug, Args)]
pub(crate) struct DevnetArgs {
    /// Keep the chain here (resumed on the next run); default: a fresh temporary directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// API listen address.
    #[arg(long, default_value = "127.0.0.1:7545")]
    pub listen: SocketAddr,
    /// Number of funded dev accounts (the demos need 12).
    #[arg(long, default_value_t = 12)]
    pub accounts: usize,
    /// Milliseconds between blocks.
    #[arg(long, default_value_t = 250)]
    pub block_interval_ms: u64,
    /// Blocks per emission epoch.
    #[arg(long, default_value_t = 20)]
    pub epoch_length: u64,
    /// Skip the demo workload (just run the node).
    #[arg(long)]
    pub no_demo: bool,
    /// Exit after the demo instead of serving until Ctrl-C.
    #[arg(long)]
    pub exit_after_demo: bool,
    /// Skip the AI Arena round (real LoRA training and validation of a tiny model).
    #[arg(long)]
    pub no_arena: bool,
    /// Skip the FL Alliance task (ten federated rounds over simulated glucose patients).
    #[arg(long)]
    pub no_alliance: bool,
    /// Privacy mode of the FL Alliance task: `plaintext` (a poisoner is trimmed), `secagg`
    /// (pairwise masking; a hospital drops out and the survivors' reveals complete the round)
    /// or `dp` (each hospital clips and noises its update; ε is reported).
    #[arg(long, default_value = "plaintext", value_parser = ["plaintext", "secagg", "dp"])]
    pub fl_privacy: String,
    /// Skip the marketplace (listing, serving and paying for the Arena winner).
    #[arg(long)]
    pub no_market: bool,
    /// Use this model directory (our HF layout, e.g. from `flockd model import`) as the Arena
    /// task's base model instead of the tiny one the devnet trains.
    #[arg(long)]
    pub base_model: Option<PathBuf>,
    /// A smaller corpus, fewer training steps and shorter phases (tests, slow machines).
    #[arg(long)]
    pub quick: bool,
}

#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// The genesis file.
    #[arg(long)]
    pub genesis: PathBuf,
    /// API listen address.
    #[arg(long, default_value = "127.0.0.1:7545")]
    pub listen: SocketAddr,
    /// The sequencer key file (default: `<data-dir>/sequencer.key`).
    #[arg(long)]
    pub sequencer_key: Option<PathBuf>,
    /// Milliseconds between blocks.
    #[arg(long, default_value_t = 1000)]
    pub block_interval_ms: u64,
    /// Skip fsync on commit (benchmarks only: a crash may lose recent blocks).
    #[arg(long)]
    pub no_fsync: bool,
    /// Largest artifact (model, update, dataset) the node stores, in bytes.
    #[arg(long, default_value_t = flock_node::server::DEFAULT_MAX_ARTIFACT_BYTES)]
    pub max_artifact_bytes: u64,
    /// Other nodes' API base URLs, comma-separated: an artifact this node misses is fetched
    /// from the first that has it (verified against its hash, resumed with range requests).
    #[arg(long, value_delimiter = ',')]
    pub artifact_peers: Vec<String>,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub bft: BftArgs,
}

/// Validator mode: blocks ordered by BFT consensus (needs the `bft` build feature).
#[derive(Debug, Args)]
pub(crate) struct BftArgs {
    /// Run as a validator of a BFT committee instead of a solo sequencer.
    #[arg(long = "bft", requires_all = ["validator_key", "committee", "peers"])]
    pub enabled: bool,
    /// This validator's key file (identity key and threshold share).
    #[arg(long)]
    pub validator_key: Option<PathBuf>,
    /// The committee file (validators' keys and the group's public polynomial).
    #[arg(long)]
    pub committee: Option<PathBuf>,
    /// Every validator's p2p address, comma-separated, in committee order (this validator
    /// listens on its own).
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<SocketAddr>,
}

/// Serving marketplace listings on the node's API (`flock-serve`).
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Serve a marketplace listing from a model directory (repeatable): OpenAI-compatible
    /// `/v1/models`, `/v1/chat/completions`, `/v1/completions` (or `/v1/predict` for predict
    /// models) on this node's API, paid from the consumers' escrow and settled on the ledger.
    #[arg(long = "serve", value_name = "LISTING=MODEL_DIR")]
    pub models: Vec<flock_serve::ServedModel>,
    /// The listings' server account, which signs the usage settlements: a key name in the
    /// keystore, or a key file holding the 64-hex-character secret seed. Required with --serve.
    #[arg(long, value_name = "NAME_OR_FILE")]
    pub server_key: Option<String>,
    /// Seconds between usage settlements.
    #[arg(long, default_value_t = 10)]
    pub settle_every_s: u64,
    /// Requests per minute per API key (sustained).
    #[arg(long, default_value_t = 600)]
    pub rate_limit: u32,
    /// Requests per API key at once (the token bucket's size).
    #[arg(long, default_value_t = 60)]
    pub rate_burst: u32,
    /// Largest `max_tokens` a request may ask for.
    #[arg(long, default_value_t = 4096)]
    pub max_tokens_cap: usize,
    /// Inference jobs run at once (default: one per core).
    #[arg(long)]
    pub serve_workers: Option<usize>,
    /// Requests waiting for an inference worker before new ones get 503.
    #[arg(long, default_value_t = 64)]
    pub serve_queue: usize,
}

#[derive(Debug, Args)]
pub(crate) struct GenesisArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// Chain id.
    #[arg(long, default_value = "flock-local")]
    pub chain_id: String,
    /// Allocations `ADDRESS_OR_KEY_NAME=AMOUNT` (e.g. `alice=1000`); repeatable.
    #[arg(long = "alloc", value_name = "WHO=AMOUNT")]
    pub allocations: Vec<String>,
    /// Blocks per emission epoch.
    #[arg(long)]
    pub epoch_length: Option<u64>,
    /// Output file (default: `<data-dir>/genesis.json`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCmd {
    /// Create a new key.
    New {
        /// Its name.
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// List keys.
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Show one key's address and public key.
    Show {
        /// Name or address.
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Debug, Args)]
pub(crate) struct TxArgs {
    /// The signing key's name (or address) in the keystore.
    #[arg(long)]
    pub from: String,
    /// Return after submission instead of waiting for the block.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub node: NodeUrl,
    #[command(subcommand)]
    pub kind: TxCmd,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TxCmd {
    /// Send FLOCK.
    Transfer {
        /// Recipient address or key name.
        #[arg(long)]
        to: String,
        /// Amount, e.g. `1.5` or `1.5 FLOCK`.
        #[arg(long)]
        amount: String,
    },
    /// Burn FLOCK.
    Burn {
        /// Amount.
        #[arg(long)]
        amount: String,
    },
    /// Stake to a target `TASK/ROLE` (e.g. `0/network`, `7/validator`).
    Stake {
        /// Target.
        #[arg(long, default_value = "0/network")]
        target: String,
        /// Amount.
        #[arg(long)]
        amount: String,
    },
    /// Start unbonding stake.
    Unstake {
        /// Target.
        #[arg(long, default_value = "0/network")]
        target: String,
        /// Amount.
        #[arg(long)]
        amount: String,
    },
    /// Delegate to an operator's pool.
    Delegate {
        /// Operator address or key name.
        #[arg(long)]
        operator: String,
        /// Amount.
        #[arg(long)]
        amount: String,
    },
    /// Withdraw a delegation.
    Undelegate {
        /// Operator address or key name.
        #[arg(long)]
        operator: String,
        /// Amount.
        #[arg(long)]
        amount: String,
    },
    /// Open your delegation pool or change σ (the share you keep), e.g. `10%`.
    SetShare {
        /// Share, e.g. `10%` or `100000ppm`.
        #[arg(long)]
        share: String,
    },
    /// Claim rewards (own, or from a pool with `--pool OPERATOR`).
    Claim {
        /// Claim your share of this operator's pool.
        #[arg(long)]
        pool: Option<String>,
    },
    /// Register (or move) your BFT validator's p2p endpoint; sign with the validator's
    /// identity account. A network validator without one is left out of the committee when
    /// it is re-dealt at an epoch boundary.
    RegisterValidator {
        /// `ip:port` your `flockd node --bft` listens on for peers.
        #[arg(long)]
        endpoint: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum QueryCmd {
    /// An account (address or key name).
    Account {
        /// Address or key name.
        who: String,
        #[command(flatten)]
        data: DataDir,
        #[command(flatten)]
        node: NodeUrl,
    },
    /// A block by height, or `latest`.
    Block {
        /// Height or `latest`.
        #[arg(default_value = "latest")]
        height: String,
        #[command(flatten)]
        node: NodeUrl,
    },
    /// A transaction by hash.
    Tx {
        /// Hash.
        hash: String,
        #[command(flatten)]
        node: NodeUrl,
    },
    /// Total supply and where it is.
    Supply {
        #[command(flatten)]
        node: NodeUrl,
    },
    /// Chain status.
    Status {
        #[command(flatten)]
        node: NodeUrl,
    },
}

pub(crate) fn init_tracing(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cli.log_json {
        b.json().init();
    } else {
        b.init();
    }
}
