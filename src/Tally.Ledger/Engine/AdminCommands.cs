using Tally.Ledger.Model;

namespace Tally.Ledger.Engine;

public sealed record SubscriptionRequest(
    string Plan, long? CreditsPerPeriod, PeriodKind Period, DateTimeOffset? Anchor = null, long RolloverMax = 0);

public sealed record GrantRequest(
    string OrganizationId, long Credits, string IdempotencyKey, GrantSource Source = GrantSource.Topup, int Priority = 0,
    DateTimeOffset? ExpiresAt = null, string? Reason = null);

internal static class Views
{
    public static OrganizationView Organization(OrganizationState state) =>
        new(state.Id, state.Name, state.ExternalId, Names.Of(state.Status), state.CreatedAt);

    public static GrantView Grant(GrantState grant) => new(grant.Id, grant.Credits, grant.Remaining, Names.Of(grant.Source),
        grant.Priority, grant.EffectiveAt, grant.ExpiresAt, grant.CreatedAt);

    public static SubscriptionView Subscription(SubscriptionState? subscription) => subscription is null
        ? new SubscriptionView("none", null, null, null, 0, null, null, null, false)
        : new SubscriptionView("active", subscription.Plan, Names.Of(subscription.Period), subscription.CreditsPerPeriod,
            subscription.RolloverMax, subscription.Anchor, subscription.PeriodStart, subscription.PeriodEnd, subscription.Unlimited);

    public static BalanceView Balance(OrganizationState state, DateTimeOffset now)
    {
        var figures = Figures(state, now);
        // In the order they are spent: the same on every read and node, whatever order the state holds them in (a
        // renewal read before it is written, and the same renewal read back from the tables, hold them differently).
        var live = state.Grants.FindAll(grant => !grant.Expired);
        live.Sort(OrganizationState.BurnOrder);
        var grants = live.ConvertAll(Grant);
        return new BalanceView(state.Id, Subscription(state.Subscription), figures.Total, figures.Used, figures.Remaining, figures.Held,
            figures.Unlimited, figures.HasAssistant, Names.Of(state.Status), grants);
    }

    /// <summary>The numbers of rule 9, without building the full view: what the compatibility endpoints need.</summary>
    public static BalanceFigures Figures(OrganizationState state, DateTimeOffset now)
    {
        var remaining = Rules.ReportedRemaining(state, now);
        var unlimited = state.Subscription is { Unlimited: true };
        // Without a subscription there is no current period, so nothing is used in it.
        var used = state.Subscription is null ? 0 : state.UsedInPeriod;
        return new BalanceFigures(state.Subscription is not null, unlimited, used, remaining, state.Held(), state.Assistants.Count > 0);
    }
}

/// <summary>Creates an organization; with a key (optional here, unlike a spending's), rule 2 holds for the creation too.</summary>
internal sealed class CreateOrganizationCommand(string name, string? externalId, string? key) : LedgerCommand<OrganizationView>
{
    public override string? OrganizationId => null;
    public override string? IdempotencyKey => key;
    public override string? IdempotencyScope => key is null ? null : Idempotency.AdminScope;

    protected override Outcome<OrganizationView> DecideOutcome(DecisionContext context)
    {
        if (key is null) return Create(context);
        if (Idempotency.Invalid(key) is { } invalid) return Outcome<OrganizationView>.Failure(invalid);
        return Idempotency.Decide(context, Idempotency.AdminScope, key, Spending.Join("create-organization", name, externalId),
            LedgerJson.Default.OrganizationView, () => Create(context));
    }

    private Outcome<OrganizationView> Create(DecisionContext context)
    {
        var state = new OrganizationState
        {
            Id = "org-" + Guid.CreateVersion7(context.Now),
            Name = name,
            ExternalId = externalId,
            Status = OrganizationStatus.Active,
            CreatedAt = context.Now,
        };
        context.AddOrganization(state);
        return new(Views.Organization(state), null);
    }
}

internal sealed class UpdateOrganizationCommand(string organizationId, string? name, OrganizationStatus? status)
    : OrganizationCommand<OrganizationView>(organizationId)
{
    protected override Outcome<OrganizationView> DecideFor(OrganizationState state, DecisionContext context)
    {
        if (name is not null) state.Name = name;
        if (status is not null) state.Status = status.Value;
        return new(Views.Organization(state), null);
    }
}

/// <summary>Subscription changes: a new or changed plan starts the current period under the new terms.</summary>
internal sealed class PutSubscriptionCommand(string organizationId, SubscriptionRequest request)
    : OrganizationCommand<SubscriptionView>(organizationId)
{
    protected override Outcome<SubscriptionView> DecideFor(OrganizationState state, DecisionContext context)
    {
        var now = context.Now;
        var anchor = LedgerEngine.WholeMilliseconds(request.Anchor ?? state.Subscription?.Anchor ?? now);
        var current = state.Subscription;
        if (current is not null && current.Plan == request.Plan && current.CreditsPerPeriod == request.CreditsPerPeriod
            && current.Period == request.Period && current.Anchor == anchor && current.RolloverMax == request.RolloverMax)
        {
            return new(Views.Subscription(current), null);
        }
        var previousPeriodStart = state.UsagePeriodStart;
        var periodStart = Periods.StartContaining(anchor, request.Period, now);
        var terms = new SubscriptionState
        {
            Plan = request.Plan,
            CreditsPerPeriod = request.CreditsPerPeriod,
            Period = request.Period,
            Anchor = anchor,
            RolloverMax = request.RolloverMax,
            PeriodStart = periodStart,
            PeriodEnd = Periods.EndOf(anchor, request.Period, periodStart),
        };
        state.CancelledPeriodStart = null;
        // The usage period (under way, or ended by a cancellation) goes on when the new terms' period contains its
        // start, which is an anchor's boundary or the time of a change that started it: it keeps that start and its
        // usage, and ends where the new terms' period ends.
        var continues = previousPeriodStart is { } previous && terms.PeriodStart <= previous && previous < terms.PeriodEnd;
        if (continues && current is not null)
        {
            // Rule 6, one allowance a period: new credits, a new plan name, a new rollover or a new end resize the
            // period's allowance (what it already gave out stays spent) instead of issuing a second one.
            terms.PeriodStart = current.PeriodStart;
            state.Subscription = terms;
            Rules.ResizeAllowance(state, terms.CreditsPerPeriod is > 0 and var credits ? credits : 0, now, context.Changes);
            return new(Views.Subscription(terms), null);
        }
        // Otherwise the current period's grants end (a cancellation ended them already) and a period starts under the
        // new terms, with its own allowance. A new period after an earlier one starts now, its usage at zero, not on
        // the anchor's boundary: consumptions carry their period's start, so usage periods must start later and
        // later, or one starting on a boundary an earlier period had started on would count that period's
        // consumptions, and their refunds. A subscription resumed within the period it was cancelled in goes on with it.
        Rules.EndPeriodGrants(state, now, context.Changes);
        state.Subscription = terms;
        var startsAt = continues ? previousPeriodStart : previousPeriodStart is null ? null : now;
        Rules.StartPeriod(state, now, rolloverCredits: 0, context.Changes, startsAt: startsAt);
        if (terms.PeriodStart != previousPeriodStart) state.UsedInPeriod = 0;
        return new(Views.Subscription(terms), null);
    }
}

internal sealed class CancelSubscriptionCommand(string organizationId) : OrganizationCommand<SubscriptionView>(organizationId)
{
    protected override Outcome<SubscriptionView> DecideFor(OrganizationState state, DecisionContext context)
    {
        if (state.Subscription is null) return new(Views.Subscription(null), null);
        Rules.EndPeriodGrants(state, context.Now, context.Changes);
        // Usage stays with its period (rule 9): resuming within this period continues it, a later one starts at 0.
        state.CancelledPeriodStart = state.Subscription.PeriodStart;
        state.Subscription = null;
        return new(Views.Subscription(null), null);
    }
}

internal sealed class GrantCommand(GrantRequest request)
    : IdempotentCommand<GrantView>(request.OrganizationId, request.IdempotencyKey, LedgerJson.Default.GrantView)
{
    protected override string Parameters => Spending.Join(
        "grant", request.Credits, request.Source, request.Priority, request.ExpiresAt?.ToUnixTimeMilliseconds(), request.Reason);

    protected override LedgerError? Validate() => Spending.InvalidCredits(request.Credits, Limits.GrantCreditsMax);

    protected override Outcome<GrantView> DecideFresh(OrganizationState state, DecisionContext context)
    {
        var now = context.Now;
        if (request.ExpiresAt is { } expiresAt && expiresAt <= now)
        {
            return Outcome<GrantView>.Failure(LedgerError.Invalid("expiresAt", "A grant must expire in the future."));
        }
        var grant = Rules.AddGrant(state, request.Credits, request.Source, request.Priority, now, request.ExpiresAt, null, now, context.Changes);
        return new(Views.Grant(grant), null);
    }
}

internal sealed class AddAssistantCommand(string organizationId, string name) : OrganizationCommand<AssistantView>(organizationId)
{
    public override bool ChangesAssistants => true;

    protected override Outcome<AssistantView> DecideFor(OrganizationState state, DecisionContext context)
    {
        if (state.Assistants.Count >= Limits.AssistantsPerOrganizationMax)
        {
            return Outcome<AssistantView>.Failure(LedgerError.Invalid("name", $"An organization has at most {Limits.AssistantsPerOrganizationMax} assistants."));
        }
        var assistant = new AssistantState(Guid.CreateVersion7(context.Now).ToString(), name, context.Now);
        state.Assistants.Add(assistant);
        context.Changes.AssistantsAdded.Add((state.Id, assistant));
        return new(new AssistantView(assistant.Id, assistant.Name, assistant.CreatedAt), null);
    }
}

internal sealed class RemoveAssistantCommand(string organizationId, string assistantId) : OrganizationCommand<bool>(organizationId)
{
    public override bool ChangesAssistants => true;

    protected override Outcome<bool> DecideFor(OrganizationState state, DecisionContext context)
    {
        var removed = state.Assistants.RemoveAll(assistant => assistant.Id == assistantId);
        if (removed == 0) return Outcome<bool>.Failure(LedgerError.NotFound("The assistant"));
        context.Changes.AssistantsRemoved.Add((state.Id, assistantId, context.Now));
        return new(true, null);
    }
}

internal sealed class CreateKeyCommand(string organizationId, ApiKeyRecord key) : OrganizationCommand<ApiKeyRecord>(organizationId)
{
    protected override Outcome<ApiKeyRecord> DecideFor(OrganizationState state, DecisionContext context)
    {
        context.Changes.KeysAdded.Add(key);
        return new(key, null);
    }
}

internal sealed class RevokeKeyCommand(string organizationId, ApiKeyRecord key) : OrganizationCommand<ApiKeyRecord>(organizationId)
{
    protected override Outcome<ApiKeyRecord> DecideFor(OrganizationState state, DecisionContext context)
    {
        if (key.RevokedAt is not null) return new(key, null);
        context.Changes.KeysRevoked.Add((key.Id, context.Now));
        return new(key with { RevokedAt = context.Now }, null);
    }
}

/// <summary>Deletion is soft: the ledger stays, the organization disappears from every API.</summary>
internal sealed class DeleteOrganizationCommand(string organizationId) : OrganizationCommand<bool>(organizationId)
{
    protected override Outcome<bool> DecideFor(OrganizationState state, DecisionContext context)
    {
        state.Status = OrganizationStatus.Deleted;
        return new(true, null);
    }
}

/// <summary>The background sweep's command: touching the organization advances it to now (renewals, expiries).</summary>
internal sealed class AdvanceCommand(string organizationId) : OrganizationCommand<bool>(organizationId)
{
    protected override Outcome<bool> DecideFor(OrganizationState state, DecisionContext context) => new(true, null);
}

internal sealed class AuditCommand(AuditEntry entry) : LedgerCommand<bool>
{
    public override string? OrganizationId => null;

    protected override Outcome<bool> DecideOutcome(DecisionContext context)
    {
        context.Changes.AuditEntries.Add(entry);
        return new(true, null);
    }
}
