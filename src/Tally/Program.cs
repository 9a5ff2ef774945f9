using Tally;

try
{
    return await TallyCommandLine.Build().Parse(args).InvokeAsync(new System.CommandLine.InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (ArgumentException exception)
{
    // Configuration mistakes (an unknown --store, postgres without a connection) are usage errors, not crashes.
    Console.Error.WriteLine(exception.Message);
    return ExitCodes.UsageError;
}
