package io.icetide.registry;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import java.util.List;
import javax.enterprise.inject.Produces;
import javax.inject.Singleton;

/**
 * Stands in for the build-time extension apicurio-common-app-components-config-index, whose
 * "-deployment" half is not published on Maven Central. That extension only lists the
 * properties an admin may change at run time; with this empty list none can be changed
 * (they keep the values from application.properties), which a test registry does not need.
 */
public class DynamicConfigIndexShim {
    @Produces
    @Singleton
    DynamicConfigPropertyList dynamicConfigProperties() {
        return new DynamicConfigPropertyList(List.of());
    }
}
