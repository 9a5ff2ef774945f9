using Tally;

return await TallyCommandLine.Build().Parse(args).InvokeAsync();
