using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Tally.Ledger.Engine;

/// <summary>A change submitted to the single writer; the caller awaits its outcome, which is set only after the commit.</summary>
internal abstract class LedgerCommand
{
    /// <summary>The organization whose state the command needs, or null for a command that creates one.</summary>
    public abstract string? OrganizationId { get; }
    public virtual string? IdempotencyKey => null;

    /// <summary>Whose keys <see cref="IdempotencyKey"/> is unique among: the organization's, or the admin API's own for a creation.</summary>
    public virtual string? IdempotencyScope => OrganizationId;
    public virtual string? ConsumptionId => null;
    public virtual string? HoldId => null;

    /// <summary>True for the commands that read the organization's assistants (adding or removing one).</summary>
    public virtual bool ChangesAssistants => false;

    public abstract void Decide(DecisionContext context);
    public abstract void Complete();
    public abstract void Fail(LedgerError error);
}

internal abstract class LedgerCommand<T> : LedgerCommand
{
    private readonly TaskCompletionSource<Outcome<T>> completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Outcome<T> decided;

    public Task<Outcome<T>> Outcome => completion.Task;

    public override void Decide(DecisionContext context) => decided = DecideOutcome(context);
    public override void Complete() => completion.TrySetResult(decided);
    public override void Fail(LedgerError error) => completion.TrySetResult(Outcome<T>.Failure(error));

    protected abstract Outcome<T> DecideOutcome(DecisionContext context);
}

/// <summary>
/// Rule 2. The key is looked up before deciding: the same parameters replay the stored result, others
/// conflict. Only successes are remembered, so a request refused for lack of credits may succeed later.
/// The store's UNIQUE (organization_id, key) backs this up inside the transaction.
/// </summary>
internal abstract class IdempotentCommand<T>(string organizationId, string key, JsonTypeInfo<T> resultType) : LedgerCommand<T>
{
    public override string OrganizationId => organizationId;
    public override string IdempotencyKey => key;

    /// <summary>The operation and its parameters, as one canonical string.</summary>
    protected abstract string Parameters { get; }

    /// <summary>
    /// Checks the parameters against the limits of SPEC §3; null when they hold. Bad input is answered here,
    /// before any state is touched, so that it can never reach an invariant check that would fail the whole batch.
    /// </summary>
    protected virtual LedgerError? Validate() => null;

    /// <summary>
    /// True for what an organization's own key asks (spending, refunds, holds): refused, replays included, unless
    /// the organization is active. Checked here, in the batch that decides, rather than when the request is
    /// authenticated: that costs no read of its own, and no disable can slip between the check and the decision.
    /// </summary>
    protected virtual bool NeedsActiveOrganization => false;

    protected sealed override Outcome<T> DecideOutcome(DecisionContext context)
    {
        if ((Idempotency.Invalid(key) ?? Validate()) is { } invalid) return Outcome<T>.Failure(invalid);
        var state = context.Organization(organizationId);
        if (NeedsActiveOrganization && state is not { Status: Model.OrganizationStatus.Active }) return Outcome<T>.Failure(LedgerError.OrganizationUnavailable);
        if (state is null) return Outcome<T>.Failure(LedgerError.NotFound("The organization"));
        return Idempotency.Decide(context, organizationId, key, Parameters, resultType, () => DecideFresh(state, context));
    }

    protected abstract Outcome<T> DecideFresh(Model.OrganizationState state, DecisionContext context);
}

/// <summary>Rule 2's replay, conflict and record of one key in one scope, for every command that takes a key.</summary>
internal static class Idempotency
{
    /// <summary>The scope of the keys of the admin API's creations, which belong to no organization yet.</summary>
    public const string AdminScope = "";

    /// <summary>The stored result on the same parameters, a conflict on others, or else the fresh decision, remembered if it succeeded.</summary>
    public static Outcome<T> Decide<T>(
        DecisionContext context, string scope, string key, string parameters, JsonTypeInfo<T> resultType, Func<Outcome<T>> decideFresh)
    {
        var fingerprint = KeyMaterial.Sha256Hex(parameters);
        if (context.FindIdempotency(scope, key) is { } existing)
        {
            if (existing.Fingerprint != fingerprint)
            {
                return Outcome<T>.Failure(new LedgerError(ErrorCode.IdempotencyConflict,
                    $"The idempotency key '{key}' was already used with other parameters."));
            }
            return new Outcome<T>(JsonSerializer.Deserialize(existing.Result, resultType), null, Replayed: true);
        }
        var outcome = decideFresh();
        if (outcome.Succeeded)
        {
            var result = JsonSerializer.Serialize(outcome.Value!, resultType);
            context.Changes.Idempotency[(scope, key)] = new IdempotencyRecord(scope, key, fingerprint, result, context.Now);
        }
        return outcome;
    }

    /// <summary>Why a key cannot be one, or null.</summary>
    public static LedgerError? Invalid(string key) => Model.Limits.IsValidIdempotencyKey(key)
        ? null
        : LedgerError.Invalid("idempotencyKey", $"An idempotency key is 1 to {Model.Limits.IdempotencyKeyLengthMax} printable ASCII characters.");
}

/// <summary>A command on an existing organization, without an idempotency key (admin changes, the sweep).</summary>
internal abstract class OrganizationCommand<T>(string organizationId) : LedgerCommand<T>
{
    public override string OrganizationId => organizationId;

    protected sealed override Outcome<T> DecideOutcome(DecisionContext context)
    {
        var state = context.Organization(organizationId);
        return state is null ? Outcome<T>.Failure(LedgerError.NotFound("The organization")) : DecideFor(state, context);
    }

    protected abstract Outcome<T> DecideFor(Model.OrganizationState state, DecisionContext context);
}
